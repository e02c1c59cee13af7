"""The audit log: one row per event an instance received, in ``seq`` order.

A step writes its rows with its checkpoint (``instances.py``); what happens to an
instance outside a step (a late task result, a cancellation, an operator's action)
is appended with :func:`append_event` under the instance's row lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from statefleet.engine.runtime.plan import AuditRow
from statefleet.engine.store.db import Connection, json_null_text, json_text
from statefleet.engine.store.queries import load_queries

__all__ = ["append_event", "insert_events"]

SQL = load_queries("instances.sql")


async def insert_events(connection: Connection, rows: Sequence[AuditRow]) -> None:
    """Appends audit rows, in one statement (an ``event_batch_row`` each: migration 0015)."""
    await connection.execute(
        SQL["insert_events"],
        [
            (
                a.tenant_id,
                a.instance_id,
                a.seq,
                a.event_id,
                a.type,
                json_text(a.payload),
                json_text(a.state_before),
                json_null_text(a.state_after),
                json_text(a.effects),
                a.handled,
                a.error,
            )
            for a in rows
        ],
    )


async def append_event(
    connection: Connection,
    tenant_id: str,
    instance_id: uuid.UUID,
    event_id: str,
    event_type: str,
    payload: Any,
    value: Any,
    error: str | None = None,
) -> None:
    """An audit row for what happened to an instance outside a step: no transition (the
    state stays ``value``), no effects.

    Call with the instance's row lock held (an UPDATE of it in this transaction): a
    statement started then sees every step committed before, so the next seq is free.
    """
    last_seq = await connection.fetchval(SQL["last_event_seq"], tenant_id, instance_id)
    seq = (last_seq if last_seq is not None else -1) + 1
    await insert_events(
        connection,
        [
            AuditRow(
                tenant_id,
                instance_id,
                seq,
                event_id,
                event_type,
                payload,
                value,
                value,
                [],
                False,
                error,
            )
        ],
    )

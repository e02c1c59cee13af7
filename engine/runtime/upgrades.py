"""The move of one instance to another definition version, as a step of its shard.

An apply (``upgrade_plans.py``) moves nothing itself: it writes one engine-made
``xstate.upgrade`` event per chosen instance to the outbox, and the event reaches the
shard owning the instance like a task's completion does. The shard applies it in
order with the instance's other events and commits it in the same group-committed
transaction, with the same optimistic version check, as any step
(:class:`~statefleet.engine.runtime.instances.InstanceRuntime`). So a concurrent event
is applied either before the move (on A) or after it (on B), never lost or half-moved.

The step re-plans against the exact checkpoint it replaces: it replays the instance's
history on B again (:func:`~statefleet.engine.runtime.replay.judge`), so an instance
that moved on since the dry run is judged on where it is now, and moved only if that
verdict is still one the apply takes. Either way the step writes an ``xstate.upgrade``
audit row (handled when moved) and marks the request's item moved or skipped.

:func:`load_moves` reads what the moves of a batch need in three statements (the
requests, the histories, the open tasks), whatever the number of instances.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from statefleet.engine.interpreter import Machine, Snapshot
from statefleet.engine.ports.queue import EventJobData
from statefleet.engine.record import record
from statefleet.engine.runtime.machines import MachineCache
from statefleet.engine.runtime.plan import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_ATTEMPTS,
    AuditRow,
    Cancellation,
    InstancePlan,
    TaskRow,
)
from statefleet.engine.runtime.replay import (
    UPGRADE_EVENT,
    HistoryEntry,
    OpenWork,
    ReplayCache,
    Verdict,
    judge,
    plan_open_work,
)
from statefleet.engine.store.db import Connection, new_uuid
from statefleet.engine.store.queries import load_queries

__all__ = [
    "UPGRADE_EVENT",
    "Move",
    "Moves",
    "load_moves",
    "move_instance",
    "takes",
    "upgrade_event_id",
]

SQL = load_queries("upgrades.sql")

#: Replays of recent upgrades' moves, by upgrade id (each one fixes the machine, map and
#: defaults a ReplayCache is for). A memo of pure results: sharing it between the shards
#: of a process is safe, and it only saves the moves of identical histories a replay.
_REPLAYS: OrderedDict[uuid.UUID, ReplayCache] = OrderedDict()
_MAX_UPGRADES = 8


def _replays(upgrade_id: uuid.UUID) -> ReplayCache:
    cache = _REPLAYS.get(upgrade_id)
    if cache is None:
        cache = _REPLAYS[upgrade_id] = ReplayCache()
        while len(_REPLAYS) > _MAX_UPGRADES:
            _REPLAYS.popitem(last=False)
    _REPLAYS.move_to_end(upgrade_id)
    return cache


def upgrade_event_id(upgrade_id: uuid.UUID, instance_id: uuid.UUID) -> str:
    """The event id of a move: one per instance and request, so a re-send is a duplicate.

    The instance is part of it because event ids are also the outbox's and the queues'
    dedupe keys, which are unique per tenant, not per instance.
    """
    return f"upgrade-{upgrade_id}-{instance_id}"


def takes(verdict: str, force: bool) -> bool:
    """Which verdicts an apply moves: compatible, and diverged with ``force``."""
    return verdict == "compatible" or (force and verdict == "diverged")


@record
class Move:
    """A request's item for one instance, as the shard reads it."""

    upgrade_id: uuid.UUID
    from_definition_id: uuid.UUID
    to_definition_id: uuid.UUID
    from_version: int
    to_version: int
    state_map: dict[str, str]
    context_defaults: dict[str, Any]
    force: bool
    dry_run: bool
    verdict: str
    chosen: bool
    outcome: str


@dataclass(slots=True)
class Moves:
    """What the moves of one batch need, read in bulk."""

    moves: dict[tuple[uuid.UUID, uuid.UUID], Move] = field(default_factory=dict)
    histories: dict[uuid.UUID, list[HistoryEntry]] = field(default_factory=dict)
    work: dict[uuid.UUID, list[OpenWork]] = field(default_factory=dict)


def _upgrade_id(event: EventJobData) -> uuid.UUID | None:
    raw = (event.payload or {}).get("upgradeId")
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


async def load_moves(
    connection: Connection, events: Sequence[tuple[str, uuid.UUID, EventJobData]]
) -> Moves:
    """Reads the requests, histories and open work of the moves ``events`` ask for."""
    keys = [(t, i, u) for t, i, ev in events if (u := _upgrade_id(ev)) is not None]
    found = Moves()
    if not keys:
        return found
    for r in await connection.fetch(
        SQL["load_moves"], [k[0] for k in keys], [k[2] for k in keys], [k[1] for k in keys]
    ):
        found.moves[(r["instance_id"], r["upgrade_id"])] = Move(
            upgrade_id=r["upgrade_id"],
            from_definition_id=r["from_definition_id"],
            to_definition_id=r["to_definition_id"],
            from_version=r["from_version"],
            to_version=r["to_version"],
            state_map=r["state_map"] or {},
            context_defaults=r["context_defaults"] or {},
            force=r["force"],
            dry_run=r["dry_run"],
            verdict=r["verdict"],
            chosen=r["chosen"],
            outcome=r["outcome"],
        )
    wanted = sorted({(t, i) for t, i, u in keys if (i, u) in found.moves})
    if not wanted:
        return found
    tenants = [t for t, _ in wanted]
    ids = [i for _, i in wanted]
    for r in await connection.fetch(SQL["histories_of"], tenants, ids):
        found.histories.setdefault(r["instance_id"], []).append(history_entry(r))
    for r in await connection.fetch(SQL["open_work_of"], tenants, ids):
        found.work.setdefault(r["instance_id"], []).append(open_work(r))
    return found


def history_entry(r: Mapping[str, Any]) -> HistoryEntry:
    return HistoryEntry(r["seq"], r["type"], r["payload"], r["state_after"], r["effects"] or ())


def open_work(r: Mapping[str, Any]) -> OpenWork:
    return OpenWork(r["id"], r["kind"], r["name"], r["idempotency_key"], r["created_at"])


async def move_instance(
    connection: Connection,
    machines: MachineCache,
    plan: InstancePlan,
    definition_id: uuid.UUID,
    machine: Machine,
    snapshot: Snapshot,
    seq: int,
    event: EventJobData,
    moves: Moves,
) -> tuple[Machine, Snapshot, bool]:
    """Plans the move ``event`` asks for into ``plan``; returns the machine, snapshot and
    whether it moved.

    ``definition_id``/``machine``/``snapshot`` are the instance's as of this event
    (earlier events of the batch included). Always writes the audit row (unhandled when
    not moved), so the event is applied once and the history says why.
    """
    upgrade_id = _upgrade_id(event)
    move = moves.moves.get((plan.instance_id, upgrade_id)) if upgrade_id else None
    payload: dict[str, Any] = {"upgradeId": str(upgrade_id) if upgrade_id else None}
    reason: str | None = None
    verdict: Verdict | None = None
    machine_b: Machine | None = None
    if move is None:
        reason = "no such upgrade for this instance"
    else:
        payload.update(
            fromVersion=move.from_version,
            toVersion=move.to_version,
            stateMap=move.state_map,
            contextDefaults=move.context_defaults,
            verdict=move.verdict,
        )
        if move.dry_run or not move.chosen or move.outcome != "planned":
            reason = "not chosen by an apply of this upgrade"
        elif definition_id != move.from_definition_id:
            reason = f"the instance is no longer on version {move.from_version}"
        else:
            machine_b = await machines.get(connection, plan.tenant_id, move.to_definition_id)
            history = moves.histories.get(plan.instance_id, []) + [
                HistoryEntry(a.seq, a.type, a.payload, a.state_after, a.effects) for a in plan.audit
            ]
            verdict = judge(
                machine_b,
                history,
                snapshot,
                state_map=move.state_map,
                context_defaults=move.context_defaults,
                cache=_replays(move.upgrade_id),
            )
            payload["appliedVerdict"] = verdict.verdict
            if verdict.verdict != move.verdict:
                payload["detail"] = verdict.detail()
            if not takes(verdict.verdict, move.force):
                reason = f"re-planned: the instance is now {verdict.verdict}"
            else:
                verdict = _with_work(verdict, machine, machine_b, history, moves, plan, move)
    moved_to: Machine | None = None
    payload["moved"] = False
    if reason is not None:
        payload["reason"] = reason
    effects: list[dict[str, Any]] = []
    after = snapshot
    if reason is None and verdict is not None and machine_b is not None and move is not None:
        moved_to = machine_b
        payload["moved"] = True
        payload["tasks"] = [w.as_dict() for w in verdict.work]
        after = Snapshot.from_dict(verdict.snapshot)
        _plan_work(plan, verdict, seq)
        effects = [e for w in verdict.work for e in w.effects()]
        plan.definition_id = move.to_definition_id
    moved = moved_to is not None
    if move is not None and upgrade_id is not None:
        plan.upgrade_marks.append(
            (upgrade_id, "moved" if moved else "skipped", verdict.verdict if verdict else None)
        )
    plan.audit.append(
        AuditRow(
            tenant_id=plan.tenant_id,
            instance_id=plan.instance_id,
            seq=seq,
            event_id=event.event_id,
            type=UPGRADE_EVENT,
            payload=payload,
            state_before=snapshot.value,
            state_after=after.value,
            effects=effects,
            handled=moved,
            error=None,
        )
    )
    if moved_to is not None:
        return moved_to, after, True
    return machine, snapshot, False


def _with_work(
    verdict: Verdict,
    machine_a: Machine,
    machine_b: Machine,
    history: Sequence[HistoryEntry],
    moves: Moves,
    plan: InstancePlan,
    move: Move,
) -> Verdict:
    work = plan_open_work(
        machine_a,
        machine_b,
        history,
        moves.work.get(plan.instance_id, []),
        state_map=move.state_map,
    )
    verdict.work.extend(work)
    return verdict


def _plan_work(plan: InstancePlan, verdict: Verdict, seq: int) -> None:
    """Cancellations and re-armed timers of the move, as a step's effects would be."""
    for w in verdict.work:
        if w.action == "kept":
            continue
        key = w.idempotency_key if w.kind == "task" else None
        name = None if key is not None else w.name
        plan.cancellations.append(Cancellation(plan.tenant_id, plan.instance_id, w.kind, key, name))
        if w.action == "rearmed":
            assert w.event is not None
            plan.tasks.append(
                TaskRow(
                    tenant_id=plan.tenant_id,
                    id=new_uuid(),
                    instance_id=plan.instance_id,
                    kind="timer",
                    type=w.event,
                    name=w.event,
                    input=None,
                    run_at=w.run_at,
                    delay_ms=0,
                    max_attempts=DEFAULT_MAX_ATTEMPTS,
                    backoff=DEFAULT_BACKOFF,
                    timeout_ms=None,
                    policy=None,
                    idempotency_key=f"timer-{seq}-upgrade-{w.event}",
                    completion_event=None,
                    failure_event=None,
                )
            )

"""Bodies of the schedule routes (docs/schedules.md), camelCase on the wire like the rest.

The request is checked for its shape here (a 400 naming the field); whether the cron
expression, the time zone and the definition make a schedule is the engine's question
(``Schedules.create``), answered with a 422 ``invalid_schedule`` naming the field.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from statefleet.api.models import Body, DefinitionKey, Wire
from statefleet.engine.runtime.schedules import ScheduleView

__all__ = ["ScheduleIn", "ScheduleList", "ScheduleOut"]


class ScheduleIn(Body):
    """What ``POST /v1/schedules`` takes: ``cron`` or ``every``, exactly one."""

    definition_key: DefinitionKey
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Pinned version; default: the latest"
    )
    cron: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="5 fields (minute hour day month weekday), or 6 with seconds first",
        examples=["0 9 * * MON-FRI"],
    )
    every: int | None = Field(
        default=None, ge=1, le=366 * 24 * 3600, description="A period in seconds"
    )
    timezone: str = Field(
        default="UTC", min_length=1, max_length=100, description="IANA name of the cron's zone"
    )
    input: dict[str, Any] | None = None
    overlap: Literal["skip", "allow", "bufferOne"] = Field(
        default="skip", description="A tick while the previous instance still runs"
    )
    catch_up: Literal["skip", "all"] = Field(
        default="skip", description="Ticks missed while no engine ran"
    )


class ScheduleOut(Wire):
    id: uuid.UUID
    definition_key: str
    version: int | None
    cron: str | None
    every: int | None
    timezone: str
    input: dict[str, Any]
    overlap: Literal["skip", "allow", "bufferOne"]
    catch_up: Literal["skip", "all"]
    paused: bool
    next_run_at: datetime = Field(description="The next tick not handled yet")
    buffered_at: datetime | None = Field(
        description="The tick a bufferOne schedule holds until the running instance ends"
    )
    last_tick_at: datetime | None
    last_instance_id: uuid.UUID | None
    skipped_ticks: int = Field(description="Ticks the overlap policy skipped")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, v: ScheduleView) -> ScheduleOut:
        return cls(
            id=v.id,
            definition_key=v.definition_key,
            version=v.definition_version,
            cron=v.cron,
            every=v.every_seconds,
            timezone=v.timezone,
            input=v.input,
            overlap=v.overlap,  # type: ignore[arg-type]
            catch_up=v.catch_up,  # type: ignore[arg-type]
            paused=v.paused,
            next_run_at=v.next_run_at,
            buffered_at=v.buffered_at,
            last_tick_at=v.last_tick_at,
            last_instance_id=v.last_instance_id,
            skipped_ticks=v.skipped_ticks,
            created_at=v.created_at,
            updated_at=v.updated_at,
        )


class ScheduleList(Wire):
    items: list[ScheduleOut]
    next_cursor: str | None

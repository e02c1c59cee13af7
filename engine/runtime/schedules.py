"""Schedules: start an instance of a definition on a cron expression or every N seconds.

Two halves (docs/schedules.md):

- :class:`Schedules`, the front door's use cases: create (checked: the cron expression,
  the time zone and the definition), list, get, pause, resume, delete; every call takes
  the tenant and never sees another tenant's rows.
- :class:`Scheduler`, run by every engine loop next to its sweeper: each poll it claims
  the schedules whose next tick has passed with ``FOR UPDATE SKIP LOCKED`` (so engines
  in several workers share them, and a tick is handled by one), starts the tick's
  instance through the service with the start idempotency key
  ``schedule:<id>:<tick, ISO 8601 UTC>``, and advances ``next_run_at`` in the claiming
  transaction. The start commits on its own connection just before; a process that dies
  in between leaves ``next_run_at`` where it was, and the next claim of the same tick
  finds the instance by its key instead of starting another. So each tick starts one
  instance, whatever the number of engines and restarts.

Time comes from an injectable clock, so tests drive ticks without waiting for them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from statefleet.engine.record import record
from statefleet.engine.runtime.background import BackgroundLoop
from statefleet.engine.runtime.cron import Rule, check_cron, check_timezone
from statefleet.engine.store.db import Connection, Pool, Record
from statefleet.engine.store.queries import load_queries

if TYPE_CHECKING:
    from statefleet.engine.runtime.definitions import Definition
    from statefleet.engine.runtime.service import WorkflowService

__all__ = [
    "CATCH_UP_MAX",
    "CatchUp",
    "FireReport",
    "InvalidSchedule",
    "Overlap",
    "SchedulePage",
    "ScheduleRequest",
    "ScheduleView",
    "Scheduler",
    "Schedules",
    "UnknownSchedule",
    "tick_key",
    "utc_now",
]

log = logging.getLogger(__name__)
SQL = {**load_queries("schedules.sql"), **load_queries("instances.sql")}

Overlap = Literal["skip", "allow", "bufferOne"]
CatchUp = Literal["skip", "all"]
#: With ``catchUp: all``, at most this many missed ticks run after a downtime (the most
#: recent ones), so a schedule every second does not start a day's worth at once.
CATCH_UP_MAX = 100


def utc_now() -> datetime:
    return datetime.now(UTC)


def tick_key(schedule_id: uuid.UUID, tick: datetime) -> str:
    """The start idempotency key of a tick: ``schedule:<id>:2026-03-01T09:00:00Z``."""
    when = tick.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"schedule:{schedule_id}:{when}"


class UnknownSchedule(LookupError):
    pass


class InvalidSchedule(ValueError):
    """A schedule that cannot be created; ``path`` names the request field (wire name)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@record
class ScheduleRequest:
    """What a new schedule needs: exactly one of ``cron`` and ``every_seconds``."""

    definition_key: str
    cron: str | None = None
    every_seconds: int | None = None
    version: int | None = None
    timezone: str = "UTC"
    input: Mapping[str, Any] = field(default_factory=dict)
    overlap: Overlap = "skip"
    catch_up: CatchUp = "skip"


@record
class ScheduleView:
    id: uuid.UUID
    tenant_id: str
    definition_key: str
    definition_version: int | None
    cron: str | None
    every_seconds: int | None
    timezone: str
    input: dict[str, Any]
    overlap: str
    catch_up: str
    paused: bool
    next_run_at: datetime
    buffered_at: datetime | None
    last_tick_at: datetime | None
    last_instance_id: uuid.UUID | None
    skipped_ticks: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, r: Record) -> ScheduleView:
        return cls(**{name: r[name] for name in cls.__dataclass_fields__})


@record
class SchedulePage:
    items: list[ScheduleView]
    next_cursor: str | None


def _rule(r: Record) -> Rule:
    return Rule(r["cron"], r["every_seconds"], r["timezone"], r["anchor_at"])


class Schedules:
    """The tenant's schedules; ``definition`` is the service's lookup (it raises a
    ``LookupError`` for an unknown key or version)."""

    def __init__(
        self,
        pool: Pool,
        definition: Callable[[str, str, int | None], Awaitable[Definition]],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.pool = pool
        self.definition = definition
        self.clock = clock

    async def create(self, tenant_id: str, request: ScheduleRequest) -> ScheduleView:
        """Checks and stores a schedule; its first tick is the first one after now.

        Raises:
            InvalidSchedule: no or two rules, a bad cron expression or period, an unknown
                time zone, definition or version; ``path`` names the field.
        """
        if (request.cron is None) == (request.every_seconds is None):
            raise InvalidSchedule("cron", "give either cron or every, not both or neither")
        if request.every_seconds is not None and request.every_seconds < 1:
            raise InvalidSchedule("every", "the period is at least 1 second")
        try:
            check_timezone(request.timezone)
        except ValueError as error:
            raise InvalidSchedule("timezone", str(error)) from None
        if request.cron is not None:
            try:
                check_cron(request.cron)
            except ValueError as error:
                raise InvalidSchedule("cron", str(error)) from None
        try:
            await self.definition(tenant_id, request.definition_key, request.version)
        except LookupError as error:
            path = "version" if request.version is not None else "definitionKey"
            raise InvalidSchedule(path, str(error)) from None
        now = self.clock()
        anchor = now.replace(microsecond=0)
        rule = Rule(request.cron, request.every_seconds, request.timezone, anchor)
        async with self.pool.acquire() as connection:
            record = await connection.fetchrow(
                SQL["insert_schedule"],
                tenant_id,
                uuid.uuid4(),
                request.definition_key,
                request.version,
                request.cron,
                request.every_seconds,
                request.timezone,
                dict(request.input),
                request.overlap,
                request.catch_up,
                anchor,
                rule.after(now),
            )
        assert record is not None
        return ScheduleView.from_record(record)

    async def get(self, tenant_id: str, schedule_id: uuid.UUID) -> ScheduleView:
        async with self.pool.acquire() as connection:
            record = await connection.fetchrow(SQL["get_schedule"], tenant_id, schedule_id)
        return self._found(record, schedule_id)

    async def list(
        self, tenant_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> SchedulePage:
        """One page, newest first; the cursor has the shape of the instance list's.

        Raises:
            InvalidCursor: ``cursor`` was not returned by this method.
        """
        from statefleet.engine.runtime.service import _decode_cursor, _encode_cursor

        after_at, after_id = _decode_cursor(cursor) if cursor else (None, None)
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                SQL["list_schedules"], tenant_id, after_at, after_id, limit + 1
            )
        items = [ScheduleView.from_record(r) for r in rows[:limit]]
        more = len(rows) > limit and bool(items)
        next_cursor = _encode_cursor(items[-1].created_at, items[-1].id) if more else None
        return SchedulePage(items, next_cursor)

    async def pause(self, tenant_id: str, schedule_id: uuid.UUID) -> ScheduleView:
        """Starts nothing more until resumed (a buffered tick is dropped). Idempotent."""
        async with self.pool.acquire() as connection:
            record = await connection.fetchrow(SQL["pause_schedule"], tenant_id, schedule_id)
        return self._found(record, schedule_id)

    async def resume(self, tenant_id: str, schedule_id: uuid.UUID) -> ScheduleView:
        """Ticks again from the first tick after now: what was missed while paused is
        not caught up. Resuming an active schedule changes nothing."""
        async with self.pool.acquire() as connection, connection.transaction():
            current = await connection.fetchrow(SQL["get_schedule"], tenant_id, schedule_id)
            if current is None:
                raise UnknownSchedule(f"schedule {schedule_id} not found")
            following = _rule(current).after(self.clock())
            record = await connection.fetchrow(
                SQL["resume_schedule"], tenant_id, schedule_id, following
            )
        return self._found(record, schedule_id)

    async def delete(self, tenant_id: str, schedule_id: uuid.UUID) -> None:
        """Removes the schedule; the instances it started keep running."""
        async with self.pool.acquire() as connection:
            deleted = await connection.fetchval(SQL["delete_schedule"], tenant_id, schedule_id)
        if deleted is None:
            raise UnknownSchedule(f"schedule {schedule_id} not found")

    @staticmethod
    def _found(record: Record | None, schedule_id: uuid.UUID) -> ScheduleView:
        if record is None:
            raise UnknownSchedule(f"schedule {schedule_id} not found")
        return ScheduleView.from_record(record)


@dataclass(slots=True)
class FireReport:
    """What one :meth:`Scheduler.fire_due` did: instances started, ticks the overlap
    policy skipped, ticks it buffered."""

    started: int = 0
    skipped: int = 0
    buffered: int = 0


class Scheduler(BackgroundLoop):
    """Fires due schedules: :meth:`fire_due` once, or :meth:`start` to keep firing until
    :meth:`stop`, waking at the earliest next tick and at least every ``poll_ms``."""

    task_name = "statefleet-scheduler"
    failure_log = log
    failure_message = "scheduler poll failed; trying again in %d ms"

    def __init__(
        self,
        pool: Pool,
        service: WorkflowService,
        *,
        poll_ms: int = 1_000,
        batch: int = 100,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.pool = pool
        self.service = service
        self.poll_ms = poll_ms
        #: A tick later than this was missed while no engine ran (``catchUp: skip``
        #: drops it); one less late runs: a poll that came late is not downtime.
        self.late_grace = max(timedelta(seconds=5), timedelta(milliseconds=2 * poll_ms))
        self.batch = batch
        self.clock = clock
        #: ``last_pass``: monotonic time the last poll ended (failed or not).
        super().__init__()

    async def fire_due(self, now: datetime | None = None) -> FireReport:
        """Handles every tick due at ``now`` (default: the clock), one tick per schedule
        per round, in rounds until none is due (``catchUp: all`` needs one per tick)."""
        now = now or self.clock()
        report = FireReport()
        failed: set[uuid.UUID] = set()  # tried again at the next poll, not in this one
        for _ in range(CATCH_UP_MAX + 2):
            progressed = 0
            async with self.pool.acquire() as connection, connection.transaction():
                rows = await connection.fetch(SQL["claim_due_schedules"], now, self.batch)
                for row in rows:
                    if row["id"] in failed:
                        continue
                    try:
                        # A savepoint each: a row that fails rolls back alone.
                        async with connection.transaction():
                            await self._handle(connection, row, now, report)
                        progressed += 1
                    except Exception:
                        # Left as it was: the next poll tries the same tick again.
                        failed.add(row["id"])
                        log.exception("schedule %s: firing failed; retrying later", row["id"])
            if not progressed:
                break
        return report

    async def _handle(
        self, connection: Connection, row: Record, now: datetime, report: FireReport
    ) -> None:
        rule = _rule(row)
        tenant_id, schedule_id = row["tenant_id"], row["id"]
        running: bool = row["last_running"]
        last_instance: uuid.UUID | None = row["last_instance_id"]
        last_tick: datetime | None = row["last_tick_at"]
        buffered: datetime | None = row["buffered_at"]
        next_run: datetime = row["next_run_at"]
        skipped = 0
        if buffered is not None and not running:
            last_instance = await self._start(row, buffered)
            last_tick, buffered, running = buffered, None, True
            report.started += 1
        if next_run <= now:
            if row["catch_up"] == "skip" and next_run >= now - self.late_grace:
                # Only a little late (a busy machine, a worker restarting): not missed.
                # The rounds of fire_due run such ticks one after the other.
                tick = next_run
            else:
                window = rule.latest(now, CATCH_UP_MAX if row["catch_up"] == "all" else 1)
                tick = max(next_run, window[0]) if window else next_run
            next_run = rule.after(tick)
            key = tick_key(schedule_id, tick)
            found = await connection.fetch(SQL["find_instances_by_start_key"], tenant_id, [key])
            if found:  # started by an engine that died before recording it
                last_instance, last_tick = found[0]["id"], tick
            elif row["overlap"] == "allow" or not running:
                last_instance, last_tick = await self._start(row, tick), tick
                report.started += 1
            elif row["overlap"] == "bufferOne" and buffered is None:
                buffered = tick
                report.buffered += 1
            else:
                skipped += 1
                report.skipped += 1
        await connection.execute(
            SQL["record_schedule_ticks"],
            tenant_id,
            schedule_id,
            next_run,
            buffered,
            last_tick,
            last_instance,
            skipped,
        )

    async def _start(self, row: Record, tick: datetime) -> uuid.UUID:
        key = tick_key(row["id"], tick)
        result = await self.service.start(
            row["tenant_id"],
            row["definition_key"],
            row["input"],
            version=row["definition_version"],
            idempotency_key=key,
        )
        log.info("schedule %s: tick %s started instance %s", row["id"], key, result.instance_id)
        return result.instance_id

    def _wait_ms(self) -> int:
        return self.poll_ms

    async def _pass(self, wait: float) -> float:
        await self.fire_due()
        return await self._until_next_tick(wait)

    async def _until_next_tick(self, longest: float) -> float:
        """Seconds to sleep: until the earliest tick of any schedule, at most ``longest``.

        So a tick starts within milliseconds of its time rather than up to a poll late;
        the poll still bounds the wait, for schedules created meanwhile and for ticks
        buffered until an instance ends.
        """
        async with self.pool.acquire() as connection:
            earliest: datetime | None = await connection.fetchval(SQL["next_schedule_tick"])
        if earliest is None:
            return longest
        return max(0.005, min(longest, (earliest - self.clock()).total_seconds()))

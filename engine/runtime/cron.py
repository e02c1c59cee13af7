"""When a schedule ticks: cron expressions (through ``cronsim``) and fixed periods.

The one module of the engine that imports the cron library (tests/unit/test_architecture.py),
so the rest of the engine speaks of :class:`Rule` and aware ``datetime`` values only.
``cronsim`` was chosen because it is typed, iterates backwards as well as forwards (the
latest missed tick is found without walking every tick of a long downtime) and follows
Debian cron across DST changes: in a zone that springs forward, a job at 02:30 runs at
03:00 that day; in one that falls back, it runs once, at the first 02:30.

Every time here is an aware ``datetime``; results are in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from statefleet.engine.record import record

__all__ = ["Rule", "check_cron", "check_timezone"]


def check_timezone(name: str) -> ZoneInfo:
    """The zone ``name`` names (IANA, such as ``Europe/Paris``).

    Raises:
        ValueError: no such zone.
    """
    try:
        if not name or name.startswith("/") or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as UTC") from None


def check_cron(expression: str) -> str:
    """``expression`` if cron can read it: 5 fields (minute hour day month weekday), or 6
    with seconds first; ``L`` and ``#`` as in cronsim. Returns it unchanged.

    Raises:
        ValueError: it has the wrong number of fields or a field out of range.
    """
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError, IndexError) as error:
        raise ValueError(f"not a cron expression: {error}") from None
    return expression


@record
class Rule:
    """A schedule's ticks: ``cron`` in ``timezone``, or every ``every_seconds`` from ``anchor``.

    Exactly one of ``cron`` and ``every_seconds`` is set.
    """

    cron: str | None
    every_seconds: int | None
    timezone: str
    anchor: datetime

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_seconds is None):
            raise ValueError("a schedule has either a cron expression or a period, not both")

    def after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        if self.every_seconds is not None:
            period = timedelta(seconds=self.every_seconds)
            if moment < self.anchor:
                return self.anchor + period
            done = (moment - self.anchor) // period
            return self.anchor + (done + 1) * period
        assert self.cron is not None
        zone = check_timezone(self.timezone)
        tick = next(CronSim(self.cron, moment.astimezone(zone)))
        return tick.astimezone(UTC)

    def latest(self, moment: datetime, count: int = 1) -> list[datetime]:
        """The ``count`` latest ticks at or before ``moment``, oldest first (fewer if the
        rule has fewer since its anchor)."""
        if self.every_seconds is not None:
            period = timedelta(seconds=self.every_seconds)
            if moment < self.anchor + period:
                return []
            last = (moment - self.anchor) // period
            return [self.anchor + k * period for k in range(max(1, last - count + 1), last + 1)]
        assert self.cron is not None
        zone = check_timezone(self.timezone)
        # cronsim's reverse iteration from a whole second starts strictly before it; one
        # second past the floor of ``moment`` makes a tick exactly at ``moment`` count.
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        ticks: list[datetime] = []
        for tick in CronSim(self.cron, start.astimezone(zone), reverse=True):
            utc = tick.astimezone(UTC)
            if utc < self.anchor or len(ticks) == count:
                break
            ticks.append(utc)
        return ticks[::-1]

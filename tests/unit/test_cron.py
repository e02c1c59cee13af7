"""When a schedule ticks (engine/runtime/cron.py): pure, no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from statefleet.engine.runtime.cron import Rule, check_cron, check_timezone

ANCHOR = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return ANCHOR + timedelta(seconds=seconds)


def test_a_period_ticks_from_its_anchor() -> None:
    rule = Rule(None, 10, "UTC", ANCHOR)
    assert rule.after(ANCHOR - timedelta(days=1)) == at(10)
    assert rule.after(ANCHOR) == at(10)
    assert rule.after(at(9.999)) == at(10)
    assert rule.after(at(10)) == at(20)  # strictly after
    assert rule.latest(at(9)) == []
    assert rule.latest(at(10)) == [at(10)]  # at or before
    assert rule.latest(at(35), 2) == [at(20), at(30)]
    assert rule.latest(at(35), 100) == [at(10), at(20), at(30)]  # none before the anchor


def test_a_cron_ticks_in_its_zone() -> None:
    rule = Rule("0 9 * * *", None, "America/New_York", ANCHOR)
    # 09:00 in New York is 14:00 UTC in January (EST) and 13:00 in July (EDT).
    assert rule.after(ANCHOR) == datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
    assert rule.after(datetime(2026, 7, 1, tzinfo=UTC)) == datetime(2026, 7, 1, 13, 0, tzinfo=UTC)
    tick = datetime(2026, 1, 3, 14, 0, tzinfo=UTC)
    assert rule.latest(tick) == [tick]  # a tick exactly at the moment counts
    assert rule.latest(tick - timedelta(microseconds=1)) == [tick - timedelta(days=1)]
    assert rule.latest(tick, 5) == [tick - timedelta(days=2), tick - timedelta(days=1), tick]


def test_daylight_saving_follows_debian_cron() -> None:
    rule = Rule("30 2 * * *", None, "Europe/Paris", ANCHOR)
    # 29 March 2026: 02:00 -> 03:00, so 02:30 does not exist: it runs at 03:00 CEST.
    assert rule.after(datetime(2026, 3, 28, 12, tzinfo=UTC)) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )
    # 25 October 2026: 03:00 -> 02:00, so 02:30 happens twice: it runs once, the first.
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert rule.after(datetime(2026, 10, 24, 12, tzinfo=UTC)) == first
    assert rule.after(first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize("expression", ["61 * * * *", "* * *", "* * * * * * *", "nope", ""])
def test_bad_cron_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        check_cron(expression)


def test_cron_accepts_names_and_seconds() -> None:
    assert check_cron("0 9 * * MON-FRI") == "0 9 * * MON-FRI"
    assert check_cron("*/15 * * * * *") == "*/15 * * * * *"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime"])
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="time zone"):
        check_timezone(name)


def test_a_rule_has_one_of_cron_and_period() -> None:
    with pytest.raises(ValueError, match="either"):
        Rule("* * * * *", 5, "UTC", ANCHOR)
    with pytest.raises(ValueError, match="either"):
        Rule(None, None, "UTC", ANCHOR)

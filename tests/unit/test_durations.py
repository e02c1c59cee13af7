"""Delays and instants: what the spec may write and the fixed quantities they mean."""

from __future__ import annotations

from typing import Any

import pytest

from statefleet.engine.spec import parse_delay_ms, parse_instant


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (5000, 5000),
        ("0", 0),
        ("5000", 5000),
        ("PT5M", 300_000),
        ("P2D", 172_800_000),
        ("PT0.5S", 500),
        ("PT0,25S", 250),
        ("P1W", 604_800_000),
        ("P1DT12H", 129_600_000),
        ("PT1H30M", 5_400_000),
        ("PT1.5M", 90_000),
        ("P1W1D", 691_200_000),
        ("PT0S", 0),
        ("PT0.0005S", 1),  # half a millisecond rounds up
        ("PT0.0004S", 0),
    ],
)
def test_parses_delays(value: int | str, expected: int) -> None:
    assert parse_delay_ms(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "cannot be negative"),
        ("-5", "cannot be negative"),
        ("-PT5S", "cannot be negative"),
        ("P1Y", "years and months have no fixed length"),
        ("P1M", "years and months have no fixed length"),
        ("P1Y2D", "years and months have no fixed length"),
        ("P", "no components"),
        ("PT", "no components"),
        ("P1DT", "'T' must be followed by"),
        ("PT1.5H30M", "only the last component"),
        ("5s", "expected integer milliseconds"),
        ("pt5m", "expected integer milliseconds"),
        ("", "expected integer milliseconds"),
        ("5000.0", "expected integer milliseconds"),
        ("\uff15", "expected integer milliseconds"),  # a non-ASCII digit
        (True, "invalid delay True"),
        (1.5, "invalid delay 1.5"),
        (None, "invalid delay None"),
    ],
)
def test_rejects_bad_delays(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match="invalid delay") as info:
        parse_delay_ms(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "value", ["2026-01-01T00:00:00Z", "2026-01-01T09:00:00+02:00", "2026-01-01T00:00:00.250Z"]
)
def test_parses_instants_with_a_timezone(value: str) -> None:
    assert parse_instant(value).utcoffset() is not None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-01-01T00:00:00", "needs a time and a timezone"),
        ("2026-01-01", "needs a time and a timezone"),
        ("tomorrow", "expected an ISO-8601 date-time"),
        (5, "expected an ISO-8601 string"),
    ],
)
def test_rejects_bad_instants(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match="invalid instant") as info:
        parse_instant(value)
    assert message in str(info.value)

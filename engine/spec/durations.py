"""Delays and instants as the spec writes them, turned into fixed quantities.

Timers and task schedules are persisted and replayed, so a delay must mean the
same number of milliseconds on every machine and in every language: ``after``
keys, task ``delay``/``timeout`` and retry backoff all go through
:func:`parse_delay_ms`.

The ISO-8601 parser is hand-written on purpose. ``isodate`` (the maintained
option) returns month-aware ``Duration`` objects whose length depends on a start
date, accepts signs and fractions anywhere, and would be a dependency for one
regular expression; we need a plain integer of milliseconds and a clear refusal
of years and months, which have no fixed length.
"""

from __future__ import annotations

import datetime
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

__all__ = ["parse_delay_ms", "parse_instant"]

_DIGITS: Final = re.compile(r"\d+", re.ASCII)
_NUMBER: Final = r"\d+(?:[.,]\d+)?"
_ISO_DURATION: Final = re.compile(
    rf"""
    (?P<sign>-)?
    P
    (?:(?P<Y>{_NUMBER})Y)?
    (?:(?P<M>{_NUMBER})M)?
    (?:(?P<W>{_NUMBER})W)?
    (?:(?P<D>{_NUMBER})D)?
    (?P<time>T
        (?:(?P<h>{_NUMBER})H)?
        (?:(?P<m>{_NUMBER})M)?
        (?:(?P<s>{_NUMBER})S)?
    )?
    """,
    re.ASCII | re.VERBOSE,
)
_UNIT_MS: Final = {
    "W": Decimal(7 * 24 * 3_600_000),
    "D": Decimal(24 * 3_600_000),
    "h": Decimal(3_600_000),
    "m": Decimal(60_000),
    "s": Decimal(1_000),
}
_ORDER: Final = ("Y", "M", "W", "D", "h", "m", "s")
_EXPECTED: Final = (
    "expected integer milliseconds like '5000' or an ISO-8601 duration "
    "like 'PT5M', 'P2D' or 'PT0.5S'"
)


def parse_delay_ms(value: int | str) -> int:
    """Converts a spec delay to whole milliseconds.

    Accepts a non-negative integer, a string of ASCII digits (``"5000"``), or an
    ISO-8601 duration made of weeks, days, hours, minutes and seconds
    (``"PT5M"``, ``"P1DT12H"``, ``"PT0.5S"``); only the last component may have
    a fraction. Sub-millisecond remainders round half up, so ``PT0.0005S`` is 1.

    Raises:
        ValueError: the value is negative, not a delay, or uses years or months.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"invalid delay {value!r}: {_EXPECTED}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid delay {value}: a delay cannot be negative")
        return value
    if _DIGITS.fullmatch(value):
        return int(value)
    if value.startswith("-") and _DIGITS.fullmatch(value[1:]):
        raise ValueError(f"invalid delay {value!r}: a delay cannot be negative")
    return _parse_iso_duration(value)


def _parse_iso_duration(text: str) -> int:
    match = _ISO_DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid delay {text!r}: {_EXPECTED}")
    parts = {unit: match.group(unit) for unit in _ORDER if match.group(unit) is not None}
    if not parts:
        raise ValueError(f"invalid delay {text!r}: the duration has no components; {_EXPECTED}")
    if match.group("time") is not None and not parts.keys() & {"h", "m", "s"}:
        raise ValueError(
            f"invalid delay {text!r}: 'T' must be followed by hours (H), minutes (M) or seconds (S)"
        )
    if "Y" in parts or "M" in parts:
        raise ValueError(
            f"invalid delay {text!r}: years and months have no fixed length; "
            "use weeks, days, hours, minutes or seconds"
        )
    last = [unit for unit in _ORDER if unit in parts][-1]
    fractional = [unit for unit, number in parts.items() if "." in number or "," in number]
    if fractional and fractional != [last]:
        raise ValueError(
            f"invalid delay {text!r}: only the last component of a duration may have a fraction"
        )
    if match.group("sign"):
        raise ValueError(f"invalid delay {text!r}: a delay cannot be negative")
    total = sum(
        (Decimal(number.replace(",", ".")) * _UNIT_MS[unit] for unit, number in parts.items()),
        Decimal(0),
    )
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse_instant(value: str) -> datetime.datetime:
    """Parses an ISO-8601 instant that carries its timezone (``2026-01-01T00:00:00Z``).

    A naive time would be read in whatever zone the worker runs in, so the same
    spec could schedule a task at different moments; the offset is required.

    Raises:
        ValueError: not an ISO-8601 date-time, or no timezone.
    """
    if not isinstance(value, str):
        raise ValueError(f"invalid instant {value!r}: expected an ISO-8601 string")
    try:
        instant = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"invalid instant {value!r}: expected an ISO-8601 date-time like '2026-01-01T00:00:00Z'"
        ) from None
    if instant.tzinfo is None:
        raise ValueError(
            f"invalid instant {value!r}: it needs a time and a timezone, "
            "like '2026-01-01T00:00:00Z' or '2026-01-01T09:00:00+02:00'"
        )
    return instant

"""The regions benchmark runs end to end at a tiny size (no speed is asserted).

One event to a few parallel regions, then the canary beside a heavy step on the
session's Postgres, in both modes: the heavy step must be failed by its time budget
and the canary's events must all be committed, whatever the figures.
"""

from __future__ import annotations

import pathlib

import orjson
import pytest

from benchmarks import regions


def test_regions(
    postgres_dsn: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_dsn)
    result = regions.main(sizes=(10, 40), rate=40.0, seconds=1.0, heavy=30, out=tmp_path)
    (path,) = tmp_path.glob("regions-*.json")
    stored = orjson.loads(path.read_bytes())
    assert stored["figures"] == result["figures"]
    figures = stored["figures"]
    assert figures["event_ms_10"] > 0
    assert figures["event_ms_40"] > 0
    for mode in ("thread", "inline"):
        assert figures[f"{mode}_heavy_failed_by_budget"] == 1.0
        # Small, the heavy step may run out of microsteps (1000) before its second.
        assert figures[f"{mode}_heavy_step_ms"] > 0
        assert figures[f"{mode}_canary_events_during"] > 0
        assert 0 < figures[f"{mode}_canary_p50_ms"] <= figures[f"{mode}_canary_p99_ms"]
    assert stored["parameters"]["heavy"] == 30

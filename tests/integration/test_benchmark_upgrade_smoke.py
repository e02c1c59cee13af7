"""The upgrade benchmark runs end to end at a tiny size (its ``main``, in this process).

Only the shape and the sanity of the figures are asserted, never a speed: the goal
(>= 20,000 replays/s) is the benchmark's to report.
"""

from __future__ import annotations

import pathlib

import orjson
import pytest

from benchmarks import upgrade


def test_upgrade(
    postgres_dsn: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_dsn)
    result = upgrade.main(instances=50, out=tmp_path)
    (path,) = sorted(tmp_path.glob("upgrade-*.json"))
    stored = orjson.loads(path.read_bytes())
    assert stored["benchmark"] == "upgrade"
    figures = stored["figures"]
    assert figures == result["figures"]
    assert figures["instances"] == 50
    # Four paths of five are compatible (the high-priority SUBMIT diverges): 40 move.
    assert figures["moved"] == 40
    for name in ("replay_per_s", "replay_distinct_per_s", "replay_uncached_per_s"):
        assert figures[name] > 0
    assert figures["dry_run_per_s"] == pytest.approx(50 / figures["dry_run_s"], rel=0.01)
    assert 0 < figures["apply_planned_s"] <= figures["apply_s"]

"""The BullMQ-ratio and batch benchmarks run end to end at a tiny size.

They run in this process (their ``main``), on the session's Postgres and on
``REDIS_URL`` or a throwaway ``redis-server``. Only the shape and the sanity of the
figures are asserted, never a speed: the targets are checked by the benchmarks.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from redis_server import redis_url_for_tests

from benchmarks import batch, bullmq_ratio


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_url_for_tests() as url:
        yield url


def written(result: dict[str, Any], directory: pathlib.Path, name: str) -> dict[str, Any]:
    paths = sorted(directory.glob(f"{name}-*.json"))
    assert [str(p) for p in paths] == [result["path"]]
    stored = orjson.loads(paths[0].read_bytes())
    assert stored["benchmark"] == name
    assert stored["machine"]["cores"]
    assert stored["figures"] == result["figures"]
    figures: dict[str, Any] = stored["figures"]
    return figures


def test_bullmq_ratio(
    redis_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    result = bullmq_ratio.main(jobs=300, chunk=100, concurrency=[4, 64], rounds=1, out=tmp_path)
    figures = written(result, tmp_path, "bullmq")
    for c in (4, 64):
        assert figures[f"reference_c{c}_jobs_per_s"] > 0
        assert figures[f"ratio_c{c}"] == pytest.approx(
            figures["ours_jobs_per_s"] / figures[f"reference_c{c}_jobs_per_s"], rel=0.01
        )
    assert figures["ours_jobs_per_s"] == pytest.approx(300 / figures["ours_seconds"], rel=0.01)
    fastest = max(figures["reference_c4_jobs_per_s"], figures["reference_c64_jobs_per_s"])
    assert figures["reference_best_jobs_per_s"] == fastest
    assert figures["ratio"] == pytest.approx(figures["ours_jobs_per_s"] / fastest, rel=0.01)
    assert figures["meets_target"] == float(figures["ratio"] >= 0.70)
    assert result["parameters"]["concurrency"] == [4, 64]


def test_batch(postgres_dsn: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_dsn)
    result = batch.main(instances=300, chunk=100, resident=300, max_resident=100, out=tmp_path)
    figures = written(result, tmp_path, "batch")
    assert figures["instances_done"] == 300
    assert figures["completions_per_s"] == pytest.approx(300 / figures["seconds"], rel=0.01)
    assert 0 < figures["start_seconds"] <= figures["seconds"]
    assert 0 < figures["rss_before_mb"] <= figures["rss_sampled_peak_mb"] <= figures["peak_rss_mb"]
    assert figures["rss_after_mb"] > 0
    # Every instance became resident in the roomy shard; the bounded one kept to its bound.
    assert figures["resident_measured"] == 300
    assert 0 < figures["bytes_per_resident"] < 1_000_000
    assert 0 < figures["released_per_resident"] < 1_000_000
    assert figures["bounded_max_resident"] == 100
    assert 0 < figures["bounded_peak_resident"] <= 100
    assert figures["bounded_resident_after"] <= 100
    assert figures["meets_target"] in (0.0, 1.0)

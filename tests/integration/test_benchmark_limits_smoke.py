"""The limits benchmark runs end to end at a tiny size (its ``main``, in this process).

Two real ``statefleet worker`` processes and ``statefleet api`` on BullMQ call the
benchmark's HTTP sink under a tenant's concurrency limit, then its rate limit: every
instance is done, and the limit of concurrent attempts was never exceeded, neither in
the database samples nor at the sink. The achieved rate is the benchmark's to report,
not asserted.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import orjson
import pytest
from redis_server import redis_url_for_tests

from benchmarks import limits


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_url_for_tests() as url:
        yield url


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_limits(
    postgres_dsn: str, redis_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_dsn)
    monkeypatch.setenv("REDIS_URL", redis_url)
    argv = ["--instances", "60", "--concurrency", "3", "--hold-ms", "30"]
    argv += ["--rate-instances", "40", "--per-second", "20", "--out", str(tmp_path)]
    result = limits.main(argv)
    (path,) = sorted(tmp_path.glob("limits-*.json"))
    figures = orjson.loads(path.read_bytes())["figures"]
    assert figures == result["figures"]
    assert (figures["concurrency_done"], figures["concurrency_failed"]) == (60, 0), figures
    assert figures["concurrency_sink_requests"] == 60
    assert 1 <= figures["concurrency_max_running"] <= 3, figures
    assert 1 <= figures["concurrency_sink_max_in_flight"] <= 3, figures
    assert (figures["rate_done"], figures["rate_failed"]) == (40, 0), figures
    assert figures["rate_sink_requests"] == 40

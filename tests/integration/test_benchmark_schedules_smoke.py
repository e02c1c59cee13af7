"""The schedules benchmark runs end to end at a short length (its ``main``, in this process).

Two real ``statefleet worker`` processes on BullMQ, one restarted half-way: every tick
of a 1 s schedule started exactly one instance and none is missing. Lateness is the
benchmark's to report, not asserted.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import orjson
import pytest
from redis_server import redis_url_for_tests

from benchmarks import schedules


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_url_for_tests() as url:
        yield url


def test_schedules(
    postgres_dsn: str, redis_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_dsn)
    monkeypatch.setenv("REDIS_URL", redis_url)
    result = schedules.main(["--every", "1", "--seconds", "10", "--out", str(tmp_path)])
    (path,) = sorted(tmp_path.glob("schedules-*.json"))
    figures = orjson.loads(path.read_bytes())["figures"]
    assert figures == result["figures"]
    assert figures["ticks_due"] >= 5
    assert figures["instances_started"] == figures["ticks_due"]
    assert (figures["duplicates"], figures["missing"], figures["unexpected"]) == (0, 0, 0)

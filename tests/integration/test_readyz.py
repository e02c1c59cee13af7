"""``statefleet api``'s ``/readyz`` fails while Postgres or the queue (Redis) is gone,
and recovers with them; ``/healthz`` (the process itself) stays ok."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import time

import httpx
import pytest
from redis_server import running_redis

from statefleet.embedded import free_port, throwaway_postgres
from statefleet.engine.store import migrate

_OVERRIDES = ("DATABASE_URL", "WORKFLOW_QUEUE_DRIVER", "REDIS_URL", "APP_ENV", "RAY_ADDRESS")


def status(url: str, path: str) -> int:
    try:
        return httpx.get(f"{url}{path}", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def wait_status(url: str, path: str, expected: int, log: pathlib.Path) -> None:
    deadline = time.monotonic() + 30
    while (got := status(url, path)) != expected:
        assert time.monotonic() < deadline, f"{path} answered {got}; log:\n{log.read_text()}"
        time.sleep(0.2)


@pytest.mark.slow
def test_readyz_follows_postgres_and_redis(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "api.err"
    with running_redis() as redis, throwaway_postgres(prefer="system") as (postgres, _):
        asyncio.run(migrate(postgres.dsn))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES} | {
            "DATABASE_URL": postgres.dsn,
            "WORKFLOW_QUEUE_DRIVER": "bullmq",
            "REDIS_URL": redis.url,
        }
        with log.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "statefleet", "api", "--port", str(port)],
                env=env,
                stdout=err,
                stderr=err,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_status(url, "/readyz", 200, log)
            redis.stop()
            wait_status(url, "/readyz", 503, log)
            assert status(url, "/healthz") == 200
            redis.start()
            wait_status(url, "/readyz", 200, log)
            postgres.stop()
            wait_status(url, "/readyz", 503, log)
            assert status(url, "/healthz") == 200
        finally:
            process.terminate()
            process.wait(timeout=60)

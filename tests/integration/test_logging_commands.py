"""``statefleet api`` logs through the one setup: JSON lines, an access line per request,
and, with its Postgres gone, one line per retry with the error and a traceback once."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from statefleet.embedded import free_port, throwaway_postgres
from statefleet.engine.store import migrate

_OVERRIDES = ("DATABASE_URL", "WORKFLOW_QUEUE_DRIVER", "REDIS_URL", "APP_ENV", "RAY_ADDRESS")


def wait_until(condition: Any, what: str, log: pathlib.Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}; output:\n{log.read_text()}"
        time.sleep(0.1)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def records(log: pathlib.Path) -> list[dict[str, Any]]:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    # The CLI's own warning about the memory queue is printed, not logged.
    return [json.loads(line) for line in lines if not line.startswith("warning: ")]


@pytest.mark.slow
def test_api_logs_json_access_lines_and_one_traceback_per_outage(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "api.err"
    with throwaway_postgres(prefer="system") as (server, _):
        asyncio.run(migrate(server.dsn))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES} | {
            "DATABASE_URL": server.dsn,
            "STATEFLEET_BACKEND": "local",
            "STATEFLEET_LOG_FORMAT": "json",
            "STATEFLEET_SWEEP_INTERVAL_MS": "200",
            "STATEFLEET_SHARDS": "1",
        }
        command = [sys.executable, "-m", "statefleet", "api", "--allow-memory"]
        with log.open("wb") as err:
            process = subprocess.Popen(
                [*command, "--port", str(port)], env=env, stdout=err, stderr=err
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: healthy(url), "the API never answered", log)
            assert httpx.get(f"{url}/v1/definitions", timeout=5).status_code == 401
            server.stop()  # the dependency goes away while the API runs

            def retries() -> list[dict[str, Any]]:
                return [r for r in records(log) if r["message"].startswith("sweep failed")]

            wait_until(lambda: len(retries()) >= 3, "fewer than 3 sweep retries logged", log)
        finally:
            process.terminate()
            process.wait(timeout=60)

    found = records(log)
    for record in found:
        assert {"ts", "level", "logger", "message"} <= set(record), record
    access = [r["message"] for r in found if r["logger"] == "uvicorn.access"]
    assert any("GET /healthz" in m and "200" in m for m in access), access
    assert any("GET /v1/definitions" in m and "401" in m for m in access), access
    sweeps = [r for r in found if r["message"].startswith("sweep failed")]
    with_traceback = [r for r in sweeps if "exc_info" in r]
    assert sweeps[0] is with_traceback[0]
    # One traceback per kind of error: the server going away can fail the first pass
    # with another error than the refused connections after it (a pass that was
    # mid-query when the server stopped, under load), and that kind gets its own.
    kinds = [r["exc_info"].strip().splitlines()[-1].split(":")[0] for r in with_traceback]
    assert len(kinds) == len(set(kinds)), kinds
    repeats = [r for r in sweeps if "exc_info" not in r]
    assert repeats, sweeps
    for later in repeats:
        # The error itself, on the one line: "... in 200 ms (ConnectionRefusedError: ...)",
        # of a kind whose traceback was logged before.
        assert " ms (" in later["message"], later
        name = later["message"].split(" ms (", 1)[1].split(":")[0]
        assert any(kind.split(".")[-1] == name for kind in kinds), (later, kinds)

"""``statefleet worker``'s /metrics carries the engine's figures (events, task runs, step
and task latency) for work started through a separate ``statefleet api``; so does the
api's, which runs no engine: it sums what every engine stored in ``engine_tallies``."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from aiosmtpd.controller import Controller
from redis_server import running_redis

from statefleet.embedded import free_port, throwaway_postgres
from statefleet.engine.runtime.tenants import create_tenant
from statefleet.engine.store import migrate

HELLO = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hello-workflow.json"
_OVERRIDES = ("DATABASE_URL", "WORKFLOW_QUEUE_DRIVER", "REDIS_URL", "APP_ENV", "RAY_ADDRESS")


class _Sink:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


@contextmanager
def process(args: list[str], env: dict[str, str], log: pathlib.Path) -> Iterator[None]:
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "statefleet", *args], env=env, stdout=out, stderr=out
        )
    try:
        yield
    finally:
        child.terminate()
        child.wait(timeout=60)


def metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_until(condition: object, what: str, logs: list[pathlib.Path]) -> None:
    deadline = time.monotonic() + 90
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(what + "\n" + "\n".join(p.read_text()[-2000:] for p in logs))
        time.sleep(0.3)


def ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def tenant_key(dsn: str) -> str:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        return str((await create_tenant(connection, "acme")).api_key)
    finally:
        await connection.close()


@pytest.mark.slow
def test_worker_metrics_show_the_engine_figures(tmp_path: pathlib.Path) -> None:
    smtp_port = free_port()
    sink = Controller(_Sink(), hostname="127.0.0.1", port=smtp_port)
    sink.start()
    try:
        with running_redis() as redis, throwaway_postgres(prefer="system") as (pg, _):
            asyncio.run(migrate(pg.dsn))
            key = asyncio.run(tenant_key(pg.dsn))
            api_port, worker_port = free_port(), free_port()
            env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES} | {
                "DATABASE_URL": pg.dsn,
                "WORKFLOW_QUEUE_DRIVER": "bullmq",
                "REDIS_URL": redis.url,
                "STATEFLEET_BACKEND": "local",
                "STATEFLEET_SHARDS": "1",
                "STATEFLEET_WORKER_PORT": str(worker_port),
                "STATEFLEET_SMTP_HOST": "127.0.0.1",
                "STATEFLEET_SMTP_PORT": str(smtp_port),
                "STATEFLEET_METRICS_FLUSH_MS": "200",
            }
            logs = [tmp_path / "api.log", tmp_path / "worker.log"]
            api, worker = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{worker_port}"
            with (
                process(["api", "--port", str(api_port)], env, logs[0]),
                process(["worker"], env, logs[1]),
            ):
                wait_until(lambda: ok(f"{api}/readyz"), "api not ready", logs)
                wait_until(lambda: ok(f"{worker}/readyz"), "worker not ready", logs)
                auth = {"Authorization": f"Bearer {key}"}
                spec = {"spec": json.loads(HELLO.read_text())}
                assert httpx.post(f"{api}/v1/definitions", json=spec, headers=auth).is_success
                body = {"definitionKey": "hello-workflow", "inputs": [{}, {}, {}]}
                assert httpx.post(f"{api}/v1/batches", json=body, headers=auth).is_success

                runs = 'statefleet_task_runs_total{outcome="succeeded",type="EMAIL"}'
                applied = 'statefleet_events_total{outcome="applied"}'

                def counted(base: str) -> bool:
                    text = httpx.get(f"{base}/metrics", timeout=5).text
                    # 3 starts and 3 completions applied, 3 e-mails sent.
                    return metric(text, runs) >= 3 and metric(text, applied) >= 6

                wait_until(lambda: counted(worker), "the worker's /metrics never counted", logs)
                text = httpx.get(f"{worker}/metrics", timeout=5).text
                assert metric(text, "statefleet_step_batch_seconds_count") >= 1
                assert 'statefleet_queue_depth{queue="workflow-task-runner"}' in text

                # The api runs no engine: its figures are the worker's, as last flushed.
                wait_until(lambda: counted(api), "the api's /metrics never counted", logs)
                text = httpx.get(f"{api}/metrics", timeout=5).text
                assert metric(text, "statefleet_step_batch_seconds_count") >= 1
                assert metric(text, 'statefleet_task_run_seconds_count{type="EMAIL"}') >= 3
    finally:
        sink.stop()

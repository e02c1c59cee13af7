"""``python -m benchmarks schedules``: a schedule every 2 s across two workers and a restart.

Issue 18's check of schedules: two ``statefleet worker`` processes (in-process backend,
BullMQ on a ``redis-server``, one Postgres) run a schedule that starts an instance every
``--every`` seconds (overlap ``allow``, catch-up ``skip``, so a tick no worker handled in
time would show as a gap, not be run late) for ``--seconds``; at ``--restart-at`` seconds
worker 1 is stopped (SIGTERM, a draining stop) and started again. Then the schedule is
paused and every tick before its ``nextRunAt`` is checked: how many should have started,
how many did (one instance per start key, the key naming the tick), which are missing,
and how late each start was (instance creation minus tick). Figures only: it prints and
records, it passes or fails nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from benchmarks import common, machine_info, pg
from benchmarks.cluster import STATEFLEET, Proc, _redis, _spawn, _stop, bare_env
from benchmarks.latency import percentile
from statefleet.drivers.memory import MemoryQueue
from statefleet.embedded import free_port
from statefleet.engine.runtime import InstanceRuntime, Publisher, WorkflowService
from statefleet.engine.runtime.schedules import ScheduleRequest
from statefleet.engine.store.db import create_pool

#: Finishes on its start event: each tick's instance is done within a step.
DONE_AT_ONCE: dict[str, Any] = {
    "id": "tick",
    "initial": "start",
    "states": {"start": {"on": {"WORKFLOW_START": "done"}}, "done": {"type": "final"}},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks schedules",
        description="A schedule across two workers and a restart: one start per tick?",
    )
    parser.add_argument("--every", type=int, default=2, help="the schedule's period (s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long it runs")
    parser.add_argument(
        "--restart-at", type=float, default=None, help="restart worker 1 then (default: half)"
    )
    parser.add_argument("--out", type=pathlib.Path, default=None, help="results directory")
    return parser


@dataclass
class Worker:
    proc: Proc
    url: str


@contextlib.contextmanager
def _workers(dsn: str, redis_url: str, logs: pathlib.Path) -> Iterator[list[Worker]]:
    workers: list[Worker] = []
    try:
        for index in range(2):
            workers.append(_worker(index, dsn, redis_url, logs))
        for worker in workers:
            _ready(worker)
        yield workers
    finally:
        for worker in workers:
            _stop(worker.proc)


def _worker(index: int, dsn: str, redis_url: str, logs: pathlib.Path) -> Worker:
    port = free_port()
    env = bare_env(
        DATABASE_URL=dsn,
        WORKFLOW_QUEUE_DRIVER="bullmq",
        REDIS_URL=redis_url,
        STATEFLEET_BACKEND="local",
        STATEFLEET_SHARDS="1",
        STATEFLEET_WORKER_PORT=str(port),
    )
    proc = _spawn(f"worker-{index}", [*STATEFLEET, "worker"], env, logs)
    return Worker(proc, f"http://127.0.0.1:{port}")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _ready(worker: Worker, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not _healthy(worker.url):
        proc = worker.proc
        if proc.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start:\n{proc.tail()}")
        time.sleep(0.2)


async def _create(dsn: str, every: int) -> str:
    pool = await create_pool(dsn, max_size=2)
    try:
        service = WorkflowService(pool, InstanceRuntime(pool, Publisher(pool, MemoryQueue())))
        await service.deploy(common.TENANT, DONE_AT_ONCE)
        created = await service.schedules.create(
            common.TENANT,
            ScheduleRequest(definition_key="tick", every_seconds=every, overlap="allow"),
        )
        return str(created.id)
    finally:
        await pool.close()


async def _outcome(dsn: str, schedule_id: str, every: int) -> dict[str, Any]:
    """Pauses the schedule, then compares the ticks before its nextRunAt with the starts."""
    pool = await create_pool(dsn, max_size=2)
    try:
        service = WorkflowService(pool, InstanceRuntime(pool, Publisher(pool, MemoryQueue())))
        paused = await service.schedules.pause(common.TENANT, uuid.UUID(schedule_id))
        async with pool.acquire() as connection:
            anchor = await connection.fetchval(
                "SELECT anchor_at FROM schedules WHERE id = $1", paused.id
            )
            rows = await connection.fetch(
                "SELECT start_idempotency_key AS key, created_at, status FROM workflow_instances "
                "WHERE start_idempotency_key LIKE $1",
                f"schedule:{schedule_id}:%",
            )
    finally:
        await pool.close()
    period = timedelta(seconds=every)
    expected = []
    tick = anchor + period
    while tick < paused.next_run_at:
        expected.append(tick)
        tick += period
    started: dict[datetime, list[Any]] = {}
    for row in rows:
        when = datetime.fromisoformat(row["key"].split(":", 2)[2].replace("Z", "+00:00"))
        started.setdefault(when, []).append(row)
    late = sorted((r[0]["created_at"] - t).total_seconds() for t, r in started.items())
    return {
        "expected": len(expected),
        "started": len(rows),
        "ticks_started": len(started),
        "duplicates": sum(len(r) - 1 for r in started.values()),
        "missing": [t.isoformat() for t in expected if t not in started],
        "unexpected": [t.isoformat() for t in started if t not in set(expected)],
        "done": sum(1 for r in rows if r["status"] == "done"),
        "late_p50_s": percentile(late, 50) if late else float("nan"),
        "late_max_s": max(late) if late else float("nan"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    restart_at = args.seconds / 2 if args.restart_at is None else args.restart_at
    info = machine_info.describe()
    with (
        pg.server() as admin_dsn,
        _redis() as redis_url,
        tempfile.TemporaryDirectory(prefix="sf-schedules-") as tmp,
    ):
        logs = pathlib.Path(tmp)
        dsn = asyncio.run(_create_database(admin_dsn))
        try:
            with _workers(dsn, redis_url, logs) as workers:
                schedule_id = asyncio.run(_create(dsn, args.every))
                began = time.monotonic()
                time.sleep(max(0.0, restart_at))
                _stop(workers[1].proc)
                stopped = time.monotonic()
                workers[1] = _worker(1, dsn, redis_url, logs)
                _ready(workers[1])
                down = time.monotonic() - stopped
                time.sleep(max(0.0, args.seconds - (time.monotonic() - began)))
                figures = asyncio.run(_outcome(dsn, schedule_id, args.every))
        finally:
            from benchmarks.cluster import drop_database

            asyncio.run(drop_database(admin_dsn, dsn))
    lines = [
        f"a schedule every {args.every} s for {args.seconds:g} s on 2 statefleet worker "
        f"(local backend, BullMQ); worker 1 restarted at {restart_at:g} s "
        f"(down {down:.1f} s)",
        f"  ticks due: {figures['expected']}, instances started: {figures['started']} "
        f"({figures['ticks_started']} ticks), duplicates: {figures['duplicates']}, "
        f"missing: {len(figures['missing'])}, done: {figures['done']}",
        f"  start after its tick: p50 {figures['late_p50_s']:.2f} s, "
        f"max {figures['late_max_s']:.2f} s",
    ]
    if figures["missing"]:
        lines.append(f"  missing ticks: {', '.join(figures['missing'])}")
    return common.finish(
        "schedules",
        info,
        {"every_s": args.every, "seconds": args.seconds, "restart_at_s": restart_at},
        {
            "ticks_due": figures["expected"],
            "instances_started": figures["started"],
            "duplicates": figures["duplicates"],
            "missing": len(figures["missing"]),
            "unexpected": len(figures["unexpected"]),
            "late_p50_s": figures["late_p50_s"],
            "late_max_s": figures["late_max_s"],
            "restart_down_s": down,
        },
        lines,
        args.out,
    )


async def _create_database(admin_dsn: str) -> str:
    from benchmarks.cluster import create_database

    return await create_database(admin_dsn)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()

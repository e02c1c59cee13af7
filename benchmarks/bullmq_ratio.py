"""Our BullMQ driver against the ``bullmq`` package itself: produce + consume, same run.

Target: the driver (``statefleet.drivers.bullmq``) moves at least 70% of the jobs per
second that the Python ``bullmq`` package moves on its own, for the same number of
jobs on the same Redis, measured in the same run.

Both sides start their consumer first, then add ``jobs`` jobs in chunks of ``chunk``
and are timed from the first add to the last job completed in Redis (the handler has
seen every job and no job is left waiting or active). The jobs are ``event`` jobs as
the engine publishes them (``event_job``: same data, dedupe key ``start-<uuid>``).

* reference: ``bullmq.Queue.addBulk`` (``removeOnComplete``, no custom id) and a
  ``bullmq.Worker`` whose processor does nothing, once per ``concurrency`` setting
  (by default 32 and 512 slots);
* ours: ``BullMQQueue.enqueue_many`` of ``QueueJob``s with their dedupe keys and
  ``consume_batches`` (what the engine's orchestrator uses) with a no-op batch
  handler and the engine's default batching (``EngineSettings``: batch size x batches in flight).

The headline ``ratio`` is ours over the *fastest* reference setting: the package's
own rate is its best one (its worker loop waits on every slot's task at each step,
so it slows down as slots grow). ``ratio_c<n>`` compares with each setting.
After a warm-up, ``rounds`` rounds are run (the order alternates) and the medians
reported: single runs on a small machine vary by +-20%.

Each measurement uses fresh queue names. Redis is ``REDIS_URL`` or a throwaway
``redis-server`` (no persistence), stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from bullmq import Queue as BullQueue
from bullmq import Worker as BullWorker

from benchmarks import common, machine_info
from statefleet.drivers.bullmq import BullMQQueue
from statefleet.engine.ports.queue import QueueJob, event_job
from statefleet.engine.runtime.settings import EngineSettings

TARGET = 0.70
PREFIX = "sfbench"
_SETTINGS = EngineSettings()
#: Slots of the engine's orchestrator consumer: batch size x batches in flight.
DEFAULT_CONCURRENCY = _SETTINGS.event_batch_size * _SETTINGS.event_concurrency
#: The reference Worker's slot counts measured by default: a usual one and ours.
REFERENCE_CONCURRENCY = (32, DEFAULT_CONCURRENCY)


# ----------------------------------------------------------------------------- redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """``REDIS_URL``, else a throwaway ``redis-server`` (temp dir, no persistence)."""
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("set REDIS_URL or install redis-server")
    with tempfile.TemporaryDirectory(prefix="statefleet-bench-redis-") as directory:
        port = _free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory]
        args += ["--save", "", "--appendonly", "no"]
        args += ["--logfile", os.path.join(directory, "log")]
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not _ping(port):
                if process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {process.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer within 30 s")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# ----------------------------------------------------------------------------- jobs


def engine_jobs(queue: str, count: int) -> list[QueueJob]:
    """``count`` event jobs as the engine builds them, on queue ``queue``."""
    jobs = []
    for _ in range(count):
        instance = str(uuid.uuid4())
        job = event_job(
            tenant_id=common.TENANT,
            instance_id=instance,
            event_id=f"start-{instance}",
            event_type="START",
        )
        jobs.append(QueueJob(queue, job.name, job.data, dedupe_key=job.dedupe_key))
    return jobs


class _Tally:
    """Counts handled jobs; ``all_seen`` is set at ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.seen = 0
        self.all_seen = asyncio.Event()

    def add(self, count: int) -> None:
        self.seen += count
        if self.seen >= self.target:
            self.all_seen.set()


async def _until_drained(
    counts: Callable[[], Awaitable[dict[str, int]]], tally: _Tally, timeout: float
) -> None:
    """Waits until the handler saw every job, then until Redis holds none pending."""
    async with asyncio.timeout(timeout):
        await tally.all_seen.wait()
        while True:
            pending = await counts()
            if sum(pending.values()) == 0:
                return
            await asyncio.sleep(0.002)


_PENDING = ("waiting", "active", "delayed", "prioritized", "paused", "waiting-children")


# ----------------------------------------------------------------------------- runs


async def reference(
    url: str, jobs: list[QueueJob], chunk: int, concurrency: int, timeout: float
) -> float:
    """Seconds for the ``bullmq`` package to add and process ``jobs`` (no-op processor)."""
    name = f"ref-{uuid.uuid4().hex[:10]}"
    tally = _Tally(len(jobs))

    async def processor(job: Any, token: str) -> None:
        tally.add(1)

    opts = {"removeOnComplete": True}
    entries = [{"name": job.name, "data": job.data, "opts": opts} for job in jobs]
    queue = BullQueue(name, {"connection": url, "prefix": PREFIX})
    worker = BullWorker(
        name,
        processor,
        {"connection": url, "prefix": PREFIX, "concurrency": concurrency, "autorun": False},
    )
    running = asyncio.ensure_future(worker.run())
    try:
        await queue.getJobCounts("waiting")  # connected, scripts loaded
        began = time.perf_counter()
        for offset in range(0, len(entries), chunk):
            await queue.addBulk(entries[offset : offset + chunk])
        await _until_drained(lambda: queue.getJobCounts(*_PENDING), tally, timeout)
        elapsed = time.perf_counter() - began
    finally:
        await _close_worker(worker, running)
        await queue.obliterate(force=True)
        await queue.close()
    return elapsed


async def _close_worker(worker: BullWorker, running: asyncio.Future[None]) -> None:
    """``Worker.close``, forced after 5 s: the package's close can miss a blocking read
    that starts while it runs and then waits for it forever (seen here, as the driver's
    own ``_BullConsumer._stop`` notes)."""
    graceful = asyncio.ensure_future(worker.close())
    try:
        await asyncio.wait_for(asyncio.shield(graceful), timeout=5)
    except TimeoutError:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.close(force=True), timeout=5)
        graceful.cancel()
        with contextlib.suppress(BaseException):
            await graceful
    try:
        await asyncio.wait_for(asyncio.shield(running), timeout=5)
    except (TimeoutError, asyncio.CancelledError):
        running.cancel()
        with contextlib.suppress(BaseException):
            await running


async def ours(
    url: str,
    jobs: list[QueueJob],
    chunk: int,
    timeout: float,
    *,
    batch_size: int = _SETTINGS.event_batch_size,
    batches: int = _SETTINGS.event_concurrency,
) -> float:
    """Seconds for our driver to enqueue and consume ``jobs`` (no-op batch handler)."""
    name = f"ours-{uuid.uuid4().hex[:10]}"
    jobs = [QueueJob(name, j.name, j.data, dedupe_key=j.dedupe_key) for j in jobs]
    tally = _Tally(len(jobs))

    async def handler(batch: list[QueueJob]) -> None:
        tally.add(len(batch))

    driver = BullMQQueue(url, prefix=PREFIX)
    try:
        consumer = await driver.consume_batches(
            name,
            handler,
            max_batch_size=batch_size,
            max_wait_ms=_SETTINGS.event_batch_wait_ms,
            concurrency=batches,
        )
        await driver.counts(name)  # connected, scripts loaded
        began = time.perf_counter()
        for offset in range(0, len(jobs), chunk):
            await driver.enqueue_many(jobs[offset : offset + chunk])
        await _until_drained(lambda: driver.counts(name), tally, timeout)
        elapsed = time.perf_counter() - began
        await consumer.stop()
    finally:
        await driver.close()
    cleanup = BullQueue(name, {"connection": url, "prefix": PREFIX})
    try:
        await cleanup.obliterate(force=True)
    finally:
        await cleanup.close()
    return elapsed


async def measure(
    url: str, jobs: int, chunk: int, concurrencies: tuple[int, ...], rounds: int, timeout: float
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """A warm-up, then ``rounds`` rounds of each reference and ours; medians reported.

    Odd rounds run ours first, even rounds last, so neither side always goes first.
    ``ratio`` is ours over the fastest reference (the package at its best setting);
    ``ratio_c<n>`` is ours over the reference with ``n`` slots. Also returns the
    seconds of every round, by side (``ours``, ``c<n>``).
    """
    warm = engine_jobs("unused", min(jobs, 1_000))
    await reference(url, warm, chunk, concurrencies[0], timeout)
    await ours(url, warm, chunk, timeout)
    times: dict[str, list[float]] = {"ours": [], **{f"c{c}": [] for c in concurrencies}}
    for index in range(rounds):
        batch = engine_jobs("unused", jobs)
        if index % 2:
            times["ours"].append(await ours(url, batch, chunk, timeout))
        for concurrency in concurrencies:
            seconds = await reference(url, batch, chunk, concurrency, timeout)
            times[f"c{concurrency}"].append(seconds)
        if not index % 2:
            times["ours"].append(await ours(url, batch, chunk, timeout))
    our = statistics.median(times["ours"])
    figures: dict[str, float] = {
        "ours_seconds": round(our, 3),
        "ours_jobs_per_s": round(jobs / our, 1),
    }
    best = min(statistics.median(times[f"c{c}"]) for c in concurrencies)
    for concurrency in concurrencies:
        ref = statistics.median(times[f"c{concurrency}"])
        figures[f"reference_c{concurrency}_seconds"] = round(ref, 3)
        figures[f"reference_c{concurrency}_jobs_per_s"] = round(jobs / ref, 1)
        figures[f"ratio_c{concurrency}"] = round(ref / our, 3)
    figures["reference_best_jobs_per_s"] = round(jobs / best, 1)
    figures["ratio"] = round(best / our, 3)
    figures["target"] = TARGET
    figures["meets_target"] = float(best / our >= TARGET)
    return figures, times


def main(
    *,
    jobs: int = 20_000,
    chunk: int = 1_000,
    concurrency: tuple[int, ...] | list[int] | int = REFERENCE_CONCURRENCY,
    rounds: int = 3,
    timeout: float = 600.0,
    out: Any = None,
) -> dict[str, Any]:
    """Runs the comparison; ``concurrency`` lists the reference worker's slot counts."""
    concurrencies = (concurrency,) if isinstance(concurrency, int) else tuple(concurrency)
    if jobs < 1 or chunk < 1 or rounds < 1 or not concurrencies or min(concurrencies) < 1:
        raise ValueError("jobs, chunk, rounds and every concurrency must be at least 1")
    out = None if out is None else pathlib.Path(out)
    info = machine_info.describe()
    with redis_url() as url:
        figures, times = asyncio.run(measure(url, jobs, chunk, concurrencies, rounds, timeout))
    verdict = "meets" if figures["meets_target"] else "BELOW"
    lines = [
        f"BullMQ produce + consume, {jobs:,} event jobs, added in chunks of {chunk:,}, "
        f"timed to the last completion; median of {rounds} round(s) after a warm-up",
        f"{'':<48} {'seconds':>8} {'jobs/s':>8} {'ours/it':>8}",
    ]
    for c in concurrencies:
        label = f"bullmq package, Worker concurrency {c}"
        lines.append(
            f"{label:<48} {figures[f'reference_c{c}_seconds']:>8.2f} "
            f"{figures[f'reference_c{c}_jobs_per_s']:>8,.0f} {figures[f'ratio_c{c}']:>8.1%}"
        )
    label = f"statefleet driver, consume_batches ({DEFAULT_CONCURRENCY} slots)"
    lines.append(f"{label:<48} {figures['ours_seconds']:>8.2f} {figures['ours_jobs_per_s']:>8,.0f}")
    if rounds > 1:
        rates = {side: ", ".join(f"{jobs / t:,.0f}" for t in ts) for side, ts in times.items()}
        lines.append("jobs/s by round: " + "; ".join(f"{k}: {v}" for k, v in rates.items()))
    lines.append(
        f"ratio ours / fastest package setting: {figures['ratio']:.1%} "
        f"(target >= {TARGET:.0%}: {verdict})"
    )
    parameters = {
        "jobs": jobs,
        "chunk": chunk,
        "concurrency": list(concurrencies),
        "rounds": rounds,
        "ours_slots": DEFAULT_CONCURRENCY,
    }
    return common.finish("bullmq", info, parameters, figures, lines, out)


if __name__ == "__main__":
    main()

"""``python -m benchmarks limits``: a task type's concurrency and rate limits, cluster-wide.

Issue 18's check of task limits, seen from the outside system the tasks call. Two
``statefleet worker`` processes (in-process backend, as the ``schedules`` benchmark;
the process helpers of :mod:`benchmarks.cluster`) and ``statefleet api`` share BullMQ on
a ``redis-server`` (a memory queue cannot be shared between processes) and one
Postgres. A tenant is created through the admin API and deploys a workflow whose only
task is an ``HTTP`` call to a sink this benchmark serves: the sink holds each request
``--hold-ms`` and records its arrival and how many requests it holds at once.

- Part 1: the tenant's limit ``{"HTTP": {"concurrency": 5}}`` (``PUT
  /v1/admin/tenants/{id}/scheduling``); a batch of ``--instances`` (2,000). Meanwhile
  the tenant's ``running`` HTTP tasks are counted in the database every 20 ms. Printed:
  the maximum sampled, the most requests the sink held at once (target: never above
  the limit), and the sink's requests per second.
- Part 2: the limit is replaced by ``{"HTTP": {"perSecond": 50}}`` (no concurrency
  limit); a batch of ``--rate-instances`` (1,000). Printed: the starts per second the
  sink saw over the steady part (first and last second dropped) and the deviation from
  the limit (target: within 10%).

With each part, from the API's ``/metrics`` (when it exports them): the most tasks
seen waiting under the limit (the gauge ``statefleet_tasks_throttled{type="HTTP"}``,
read every 0.5 s) and the admission passes' deferrals of HTTP tasks
(``statefleet_admission_deferred_total``, once per pass that leaves a due task
waiting). Figures only: it
passes or fails nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx

from benchmarks import common, machine_info, pg
from benchmarks.cluster import (
    STATEFLEET,
    Proc,
    _http_ok,
    _redis,
    _spawn,
    _stop,
    _wait,
    bare_env,
    create_database,
    drop_database,
)
from statefleet.client import AsyncClient
from statefleet.embedded import free_port

WORKFLOW_KEY = "call-sink"
#: Seconds between two counts of the running HTTP tasks in the database.
SAMPLE_S = 0.02
RUNNING = "SELECT count(*) FROM tasks WHERE status = 'running' AND type = 'HTTP' AND tenant_id = $1"
#: How long a task took from its creation to its end (held under the limit, handed to a
#: pool, the call, the commit), in seconds.
PHASES = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
         AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
         AS p90
FROM tasks WHERE type = 'HTTP' AND tenant_id = $1 AND created_at >= $2
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks limits",
        description="A task type's concurrency and rate limits across two workers (issue 18).",
    )
    parser.add_argument("--instances", type=int, default=2_000, help="instances of part 1")
    parser.add_argument("--concurrency", type=int, default=5, help="part 1's limit")
    parser.add_argument("--hold-ms", type=float, default=50.0, help="the sink holds a request")
    parser.add_argument("--rate-instances", type=int, default=1_000, help="instances of part 2")
    parser.add_argument("--per-second", type=float, default=50.0, help="part 2's limit")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up a part after (s)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="results directory")
    return parser


def sink_spec(url: str) -> dict[str, Any]:
    """One ``HTTP`` task to ``url``, then done."""
    task = {
        "type": "HTTP",
        "name": "call-sink",
        "input": {"url": url, "method": "POST", "json": {"from": "statefleet"}},
        "completionEvent": "CALLED",
    }
    return {
        "id": WORKFLOW_KEY,
        "initial": "start",
        "states": {
            "start": {
                "on": {
                    "WORKFLOW_START": {
                        "target": "calling",
                        "actions": [{"type": "createTask", "task": task}],
                    }
                }
            },
            "calling": {"on": {"CALLED": "done"}},
            "done": {"type": "final"},
        },
    }


@dataclass
class Sink:
    """What the outside system saw: arrivals (monotonic s) and requests held at once."""

    hold_s: float
    arrivals: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.arrivals.clear()
            self.max_in_flight = self.in_flight

    def enter(self) -> None:
        with self.lock:
            self.arrivals.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


class _Server(ThreadingHTTPServer):
    # The standard library's default backlog is 5: a burst above it would wait for
    # SYN retransmissions (1 s) and show up as a fake slowdown of the engine.
    request_queue_size = 256
    daemon_threads = True


@contextlib.contextmanager
def serving_sink(sink: Sink) -> Iterator[str]:
    """The sink on a free loopback port (a thread per request: each may be held)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            sink.enter()
            try:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(sink.hold_s)
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            finally:
                sink.leave()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/call"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Stack:
    api_url: str
    admin_key: str
    procs: list[Proc]


@contextlib.contextmanager
def running_stack(dsn: str, redis_url: str, logs: pathlib.Path) -> Iterator[Stack]:
    """Two ``statefleet worker`` (in-process backend) and ``statefleet api``, on BullMQ."""
    procs: list[Proc] = []
    admin_key = f"sfa_{secrets.token_urlsafe(32)}"
    queue = {"WORKFLOW_QUEUE_DRIVER": "bullmq", "REDIS_URL": redis_url}
    try:
        urls = []
        for index in range(2):
            port = free_port()
            env = bare_env(
                DATABASE_URL=dsn,
                STATEFLEET_BACKEND="local",
                STATEFLEET_WORKER_PORT=str(port),
                STATEFLEET_METRICS_FLUSH_MS="500",
                **queue,
            )
            procs.append(_spawn(f"worker-{index}", [*STATEFLEET, "worker"], env, logs))
            urls.append(f"http://127.0.0.1:{port}")
        api_port = free_port()
        api_env = bare_env(
            DATABASE_URL=dsn,
            STATEFLEET_API_PORT=str(api_port),
            STATEFLEET_ADMIN_KEY=admin_key,
            **queue,
        )
        procs.append(_spawn("api", [*STATEFLEET, "api"], api_env, logs))
        api_url = f"http://127.0.0.1:{api_port}"
        urls.append(api_url)
        for url in urls:
            _wait(lambda url=url: _http_ok(f"{url}/healthz"), url, procs)
        yield Stack(api_url, admin_key, procs)
    finally:
        for proc in procs:
            _stop(proc)


#: The gauge of tasks waiting under a limit now, and the counter of the admission
#: passes' deferrals (both by task type).
THROTTLED = "statefleet_tasks_throttled"
DEFERRED = "statefleet_admission_deferred_total"
#: Seconds between two reads of the API's /metrics during a part.
METRICS_S = 0.5


async def http_metric(http: httpx.AsyncClient, api_url: str, name: str) -> float | None:
    """``name{type="HTTP"}`` on the API's ``/metrics`` (the cluster's), None if absent."""
    try:
        text = (await http.get(f"{api_url}/metrics", timeout=30)).text
    except httpx.HTTPError:
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"{name}{{") and 'type="HTTP"' in line
    ]
    return sum(values) if values else None


async def _set_limits(stack: Stack, tenant_id: str, limits: dict[str, Any]) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.put(
            f"{stack.api_url}/v1/admin/tenants/{tenant_id}/scheduling",
            json={"weight": 1, "taskLimits": {"HTTP": limits}},
            headers={"Authorization": f"Bearer {stack.admin_key}"},
        )
    if response.status_code != 200:
        raise RuntimeError(f"PUT scheduling answered {response.status_code}: {response.text}")


async def _part(
    client: AsyncClient,
    api_url: str,
    dsn: str,
    tenant_id: str,
    instances: int,
    tag: str,
    timeout: float,
) -> dict[str, Any]:
    """Posts a batch and waits for it, counting running HTTP tasks every 20 ms meanwhile
    (and reading the throttled gauge every 0.5 s)."""
    connection = await asyncpg.connect(dsn)
    http = httpx.AsyncClient()
    samples: list[int] = []
    gauge: list[float] = []
    finished = asyncio.Event()

    async def sample() -> None:
        while not finished.is_set():
            samples.append(int(await connection.fetchval(RUNNING, tenant_id)))
            await asyncio.sleep(SAMPLE_S)

    async def watch() -> None:
        while not finished.is_set():
            value = await http_metric(http, api_url, THROTTLED)
            if value is not None:
                gauge.append(value)
            await asyncio.sleep(METRICS_S)

    since = await connection.fetchval("SELECT now()")
    deferred_before = await http_metric(http, api_url, DEFERRED)
    sampler = asyncio.create_task(sample())
    watcher = asyncio.create_task(watch())
    began = time.monotonic()
    try:
        made = await client.batch(
            WORKFLOW_KEY, [{"n": i} for i in range(instances)], idempotency_key=tag
        )
        while True:
            progress = await client.batch(made.batch_id)
            if progress.finished >= instances:
                break
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"{progress.finished} of {instances} after {timeout:.0f} s")
            await asyncio.sleep(0.2)
        seconds = time.monotonic() - began
        finished.set()
        await sampler
        await watcher
        phases = await connection.fetchrow(PHASES, tenant_id, since)
        assert phases is not None  # an aggregate: always one row
        await asyncio.sleep(1.5)  # the engines' tallies reach the API's /metrics
        deferred_after = await http_metric(http, api_url, DEFERRED)
    finally:
        finished.set()
        await connection.close()
        await http.aclose()
    return {
        "throttled_max": max(gauge) if gauge else None,
        "deferred": None if deferred_after is None else deferred_after - (deferred_before or 0.0),
        "seconds": seconds,
        "done": progress.counts.done,
        "failed": progress.counts.failed,
        "samples": len(samples),
        "max_running": max(samples, default=0),
        "created_to_finished_p50_s": phases["p50"],
        "created_to_finished_p90_s": phases["p90"],
    }


def steady_rate(arrivals: list[float], trim: float = 1.0) -> tuple[float, int, float]:
    """Arrivals per second between the first and last arrival, ``trim`` s cut at each end;
    with the arrivals counted and the window's length."""
    if len(arrivals) < 2:
        return float("nan"), len(arrivals), 0.0
    ordered = sorted(arrivals)
    start, end = ordered[0] + trim, ordered[-1] - trim
    if end <= start:
        start, end = ordered[0], ordered[-1]
    inside = sum(1 for t in ordered if start <= t < end)
    return inside / (end - start), inside, end - start


async def _measure(
    stack: Stack, dsn: str, sink: Sink, url: str, args: argparse.Namespace
) -> dict[str, Any]:
    async with AsyncClient(stack.api_url, api_key=stack.admin_key, timeout=60) as admin:
        created = await admin.create_tenant("limits")
    tenant_id = created.tenant_id
    async with AsyncClient(stack.api_url, api_key=created.api_key, timeout=600) as client:
        await client.deploy(sink_spec(url))
        await _set_limits(stack, tenant_id, {"concurrency": args.concurrency})
        sink.reset()
        first = await _part(
            client,
            stack.api_url,
            dsn,
            tenant_id,
            args.instances,
            "limits-concurrency",
            args.timeout,
        )
        first["sink_max_in_flight"] = sink.max_in_flight
        first["sink_requests"] = len(sink.arrivals)
        first["sink_per_s"] = steady_rate(sink.arrivals)[0]

        await _set_limits(stack, tenant_id, {"perSecond": args.per_second})
        sink.reset()
        second = await _part(
            client,
            stack.api_url,
            dsn,
            tenant_id,
            args.rate_instances,
            "limits-rate",
            args.timeout,
        )
        rate, counted, window = steady_rate(sink.arrivals)
        second |= {
            "sink_requests": len(sink.arrivals),
            "sink_max_in_flight": sink.max_in_flight,
            "rate_per_s": rate,
            "rate_counted": counted,
            "rate_window_s": window,
            "deviation": rate / args.per_second - 1,
        }
    return {"concurrency": first, "rate": second}


def _throttled_text(part: dict[str, Any]) -> str:
    def shown(value: float | None) -> str:
        return "not exported" if value is None else f"{value:,.0f}"

    return (
        f"throttled (waiting under the limit, max seen): {shown(part['throttled_max'])}; "
        f"admission deferrals: {shown(part['deferred'])}"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info.describe()
    sink = Sink(args.hold_ms / 1000)
    with (
        pg.server() as admin_dsn,
        _redis() as redis_url,
        tempfile.TemporaryDirectory(prefix="sf-limits-") as tmp,
        serving_sink(sink) as url,
    ):
        dsn = asyncio.run(create_database(admin_dsn))
        try:
            with running_stack(dsn, redis_url, pathlib.Path(tmp)) as stack:
                try:
                    parts = asyncio.run(_measure(stack, dsn, sink, url, args))
                except BaseException:
                    for proc in stack.procs:
                        print(f"--- {proc.name} ---\n{proc.tail()}")
                    raise
        finally:
            asyncio.run(drop_database(admin_dsn, dsn))
    first, second = parts["concurrency"], parts["rate"]
    limit = args.concurrency
    peak = max(first["max_running"], first["sink_max_in_flight"])
    lines = [
        "2 statefleet worker (in-process backend) + statefleet api, BullMQ on redis-server; "
        f"each task an HTTP call to a local sink that holds it {args.hold_ms:g} ms",
        f"  concurrency {limit} per tenant for HTTP, {args.instances:,} instances: done "
        f"{first['done']:,} (failed {first['failed']}) in {first['seconds']:.1f} s",
        f"    running HTTP tasks in the database (every {SAMPLE_S * 1000:g} ms, "
        f"{first['samples']:,} samples): max {first['max_running']}; at the sink: max "
        f"{first['sink_max_in_flight']} in flight, {first['sink_requests']:,} requests, "
        f"{first['sink_per_s']:.1f}/s (target never above {limit}: "
        f"{'met' if peak <= limit else 'missed'})",
        f"    {_throttled_text(first)}; per task, created -> finished: p50 "
        f"{first['created_to_finished_p50_s']:.2f} s, p90 "
        f"{first['created_to_finished_p90_s']:.2f} s",
        f"  {args.per_second:g} starts/s per tenant for HTTP, {args.rate_instances:,} instances: "
        f"done {second['done']:,} (failed {second['failed']}) in {second['seconds']:.1f} s",
        f"    at the sink: {second['rate_per_s']:.1f} starts/s over the steady "
        f"{second['rate_window_s']:.1f} s ({second['rate_counted']:,} requests), deviation "
        f"{second['deviation']:+.1%} (target within 10%: "
        f"{'met' if abs(second['deviation']) <= 0.10 else 'missed'}); max in flight "
        f"{second['sink_max_in_flight']}",
        f"    {_throttled_text(second)}; per task, created -> finished: p50 "
        f"{second['created_to_finished_p50_s']:.2f} s",
    ]
    figures = {f"concurrency_{k}": v for k, v in first.items()} | {
        f"rate_{k}" if not k.startswith("rate_") else k: v for k, v in second.items()
    }
    parameters = {
        "instances": args.instances,
        "concurrency": limit,
        "hold_ms": args.hold_ms,
        "rate_instances": args.rate_instances,
        "per_second": args.per_second,
    }
    return common.finish("limits", info, parameters, figures, lines, args.out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m benchmarks limits [options]`` (see :func:`build_parser`)."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()

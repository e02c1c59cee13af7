"""``python -m benchmarks fairness``: one tenant's interactive starts while another's batch runs.

Issue 18's fairness check against a fresh ``statefleet up`` (embedded Postgres, local
Ray, memory queue, mail sink; :class:`benchmarks.loadtest.Server`, as the ``stall``
benchmark): two tenants are created through the admin API (``POST /v1/admin/tenants``
with the admin key ``up`` keeps in its credentials file) and each deploys the hello
workflow.

- Run 1 (solo): after a 200-instance warm-up, tenant A posts one ``--instances``
  hello batch (priority: the batch default) and polls its progress until every
  instance is finished.
- Run 2: A posts the same batch again; once it is running (posted, first completions
  seen), tenant B starts one instance every ``--b-interval`` seconds for
  ``--b-duration`` seconds (single starts: interactive), open loop (each start is sent
  on time, whatever the previous one's answer time).
- Run 3 (solo again): A's batch once more, alone. The faster of runs 1 and 3 is A's
  reference (over the whole batch, and apart over B's window): the first big batch
  meets tables without statistics, the last bigger tables, and other work on a shared
  machine may slow either.

B's time to done is split into where it went (from B's histories and tasks): the
start event applied, the e-mail task finished, the completion event applied.

B's time to done is the instance's ``updatedAt`` when it is ``done`` (its last step's
commit, on the same machine's clock) minus the moment its start request was sent; one
poller lists B's done instances (``GET /v1/instances?status=done``, B's own tenant)
rather than one poller per instance. A's throughput is completions per second from the
batch's progress, over the whole batch (post to last finished) and over the window in
which B was starting instances (the same offsets from the post in every run). Targets
(issue 18): B's p99 <= 2 s, A >= 90% of its solo throughput. Figures only: it passes or
fails nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from benchmarks import common, machine_info
from benchmarks.latency import percentile
from benchmarks.loadtest import Server
from statefleet.client import AsyncClient
from statefleet.credentials import CREDENTIALS_FILE, read_credentials
from statefleet.embedded import free_port

HELLO_KEY = "hello-workflow"
#: Seconds between two progress polls of A's batch.
PROGRESS_POLL_S = 0.5
#: Seconds between two listings of B's done instances.
B_POLL_S = 0.1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks fairness",
        description="Tenant B's single starts while tenant A's batch runs (issue 18).",
    )
    parser.add_argument("--instances", type=int, default=50_000, help="size of A's batch")
    parser.add_argument("--b-interval", type=float, default=0.1, help="seconds between B's starts")
    parser.add_argument("--b-duration", type=float, default=30.0, help="seconds B keeps starting")
    parser.add_argument("--timeout", type=float, default=1_800.0, help="give up a batch after (s)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="results directory")
    return parser


@dataclass
class BatchRun:
    """One of A's batches: progress samples as (seconds since the post began, finished)."""

    instances: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    post_s: float = float("nan")
    done_s: float = float("nan")

    def finished_at(self, offset: float) -> float:
        """Instances finished ``offset`` seconds after the post began (linear between polls)."""
        previous = (0.0, 0)
        for sample in self.samples:
            if sample[0] >= offset:
                (t0, f0), (t1, f1) = previous, sample
                return f0 + (f1 - f0) * ((offset - t0) / (t1 - t0) if t1 > t0 else 1.0)
            previous = sample
        return float(previous[1])

    def rate(self, start: float, end: float) -> float:
        """Completions per second between two offsets."""
        if end <= start:
            return float("nan")
        return (self.finished_at(end) - self.finished_at(start)) / (end - start)

    @property
    def completions_per_s(self) -> float:
        return self.instances / self.done_s


@dataclass
class Interactive:
    """B's starts: when each request was sent (wall clock) and when each was done."""

    sent: dict[str, float] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)
    failures: int = 0
    window: tuple[float, float] = (float("nan"), float("nan"))

    def latencies(self) -> list[float]:
        return sorted(self.done[i] - self.sent[i] for i in self.done if i in self.sent)


async def _phases(client: AsyncClient, b: Interactive) -> dict[str, list[float]]:
    """Where B's time went, per instance: request -> its start event applied (the
    queue and the shard), -> its e-mail task finished (the queue, the pool and the
    send), -> its completion event applied (back to the shard); seconds, sorted."""
    phases: dict[str, list[float]] = {"start_applied": [], "task_finished": [], "done": []}
    for instance_id, sent in b.sent.items():
        if instance_id not in b.done:
            continue
        applied = {
            entry.type: entry.created_at.timestamp() async for entry in client.history(instance_id)
        }
        tasks = [t for t in await client.tasks(instance_id) if t.updated_at is not None]
        if "WORKFLOW_START" not in applied or not tasks:
            continue
        finished = max(t.updated_at.timestamp() for t in tasks if t.updated_at is not None)
        phases["start_applied"].append(applied["WORKFLOW_START"] - sent)
        phases["task_finished"].append(finished - applied["WORKFLOW_START"])
        phases["done"].append(b.done[instance_id] - finished)
    return {name: sorted(values) for name, values in phases.items()}


async def _tenant(admin: AsyncClient, name: str, url: str) -> AsyncClient:
    created = await admin.create_tenant(name)
    client = AsyncClient(url, api_key=created.api_key, timeout=600)
    await client.deploy(common.HELLO)
    return client


async def _batch(
    client: AsyncClient, run: BatchRun, tag: str, timeout: float, running: asyncio.Event
) -> None:
    """Posts A's batch and polls its progress until all of it is finished."""
    inputs = [{"n": i} for i in range(run.instances)]
    began = time.monotonic()
    made = await client.batch(HELLO_KEY, inputs, idempotency_key=f"fairness-{tag}")
    run.post_s = time.monotonic() - began
    while True:
        progress = await client.batch(made.batch_id)
        now = time.monotonic() - began
        run.samples.append((now, progress.finished))
        if progress.finished > 0:
            running.set()
        if progress.finished >= run.instances:
            run.done_s = now
            running.set()
            return
        if now > timeout:
            raise TimeoutError(f"{progress.finished} of {run.instances} finished after {now:.0f} s")
        await asyncio.sleep(PROGRESS_POLL_S)


async def _start_one(client: AsyncClient, index: int, into: Interactive) -> None:
    sent = time.time()
    try:
        instance = await client.start(HELLO_KEY, {"b": index})
    except Exception:
        into.failures += 1
        return
    into.sent[instance.id] = sent
    if instance.status == "done":
        into.done[instance.id] = _stamp(instance.updated_at, time.time())


def _stamp(updated_at: datetime | None, fallback: float) -> float:
    return updated_at.timestamp() if updated_at is not None else fallback


async def _interactive(
    client: AsyncClient, interval: float, duration: float, base: float, timeout: float
) -> Interactive:
    """B's open-loop starts, then waits (listing B's done instances) until all are done."""
    result = Interactive()
    since = datetime.now().astimezone() - timedelta(seconds=5)
    starting = True

    async def poll() -> None:
        while starting or len(result.done) < len(result.sent):
            async for instance in client.list(status="done", created_after=since, page_size=1000):
                if instance.id not in result.done:
                    result.done[instance.id] = _stamp(instance.updated_at, time.time())
            await asyncio.sleep(B_POLL_S)

    poller = asyncio.create_task(poll())
    began = time.monotonic()
    result.window = (began - base, began - base + duration)
    starts = []
    for index in range(max(1, round(duration / interval))):
        await asyncio.sleep(max(0.0, began + index * interval - time.monotonic()))
        starts.append(asyncio.create_task(_start_one(client, index, result)))
    await asyncio.gather(*starts)
    starting = False
    with contextlib.suppress(TimeoutError):  # the ones never done are reported as missing
        await asyncio.wait_for(poller, timeout)
    return result


async def _runs(url: str, admin_key: str, args: argparse.Namespace) -> dict[str, Any]:
    async with AsyncClient(url, api_key=admin_key, timeout=60) as admin:
        a = await _tenant(admin, "fairness-a", url)
        b = await _tenant(admin, "fairness-b", url)
    try:
        # A warm-up batch first, so that neither measured run pays for starting the
        # shards, pools and connections.
        await _batch(
            a, BatchRun(min(200, args.instances)), "warm-up", args.timeout, asyncio.Event()
        )
        solo = BatchRun(args.instances)
        await _batch(a, solo, "solo", args.timeout, asyncio.Event())
        print(f"run 1 (A solo) done after {solo.done_s:.1f} s; run 2 (A with B)...", flush=True)
        shared = BatchRun(args.instances)
        running = asyncio.Event()
        base = time.monotonic()
        batch = asyncio.create_task(_batch(a, shared, "shared", args.timeout, running))
        await running.wait()
        interactive = await _interactive(
            b, args.b_interval, args.b_duration, base, max(60.0, args.b_duration * 4)
        )
        await batch
        phases = await _phases(b, interactive)
        print(f"run 2 done after {shared.done_s:.1f} s; run 3 (A solo again)...", flush=True)
        again = BatchRun(args.instances)
        await _batch(a, again, "solo-again", args.timeout, asyncio.Event())
    finally:
        await a.aclose()
        await b.aclose()
    return {
        "solos": [solo, again],
        "shared": shared,
        "interactive": interactive,
        "phases": phases,
    }


def _figures(args: argparse.Namespace, runs: dict[str, Any]) -> dict[str, Any]:
    solos: list[BatchRun] = runs["solos"]
    # The faster solo run is the reference (over the whole batch, and apart over B's
    # window): the first big batch may pay for a cold database (tables without
    # statistics yet), the last for bigger tables.
    solo = max(solos, key=lambda r: r.completions_per_s)
    shared: BatchRun = runs["shared"]
    b: Interactive = runs["interactive"]
    ordered = b.latencies()
    start, end = b.window
    end = min(end, *(r.done_s for r in solos), shared.done_s)
    solo_window = max(r.rate(start, end) for r in solos)
    shared_window = shared.rate(start, end)
    return {
        "a_solo_completions_per_s": solo.completions_per_s,
        "a_shared_completions_per_s": shared.completions_per_s,
        "a_ratio": shared.completions_per_s / solo.completions_per_s,
        "a_solo_window_per_s": solo_window,
        "a_shared_window_per_s": shared_window,
        "a_window_ratio": shared_window / solo_window if solo_window else float("nan"),
        "window_start_s": start,
        "window_end_s": end,
        "a_solo_first_completions_per_s": solos[0].completions_per_s,
        "a_solo_again_completions_per_s": solos[1].completions_per_s,
        "a_solo_first_window_per_s": solos[0].rate(start, end),
        "a_solo_again_window_per_s": solos[1].rate(start, end),
        "a_solo_reference": 1 if solo is solos[0] else 3,
        "a_solo_post_s": solo.post_s,
        "a_shared_post_s": shared.post_s,
        "a_solo_done_s": solo.done_s,
        "a_shared_done_s": shared.done_s,
        "b_started": len(b.sent),
        "b_failed": b.failures,
        "b_done": len(ordered),
        "b_missing": len(b.sent) - len(ordered),
        "b_p50_s": percentile(ordered, 50),
        "b_p99_s": percentile(ordered, 99),
        "b_max_s": ordered[-1] if ordered else float("nan"),
    } | {
        f"b_{name}_{label}_s": percentile(values, q)
        for name, values in runs["phases"].items()
        for label, q in (("p50", 50), ("p99", 99))
    }


def table(args: argparse.Namespace, f: dict[str, Any]) -> list[str]:
    target_b = "met" if f["b_p99_s"] <= 2.0 else "missed"
    target_a = "met" if f["a_window_ratio"] >= 0.9 else "missed"
    if f["window_end_s"] > f["window_start_s"]:
        window = (
            f"  A in B's window ({f['window_start_s']:.1f}-{f['window_end_s']:.1f} s after the "
            f"post): {f['a_shared_window_per_s']:,.0f}/s vs {f['a_solo_window_per_s']:,.0f}/s "
            f"(the faster of runs 1 and 3: {f['a_solo_first_window_per_s']:,.0f}/s and "
            f"{f['a_solo_again_window_per_s']:,.0f}/s) = {f['a_window_ratio']:.0%} "
            f"(target >= 90%: {target_a})"
        )
    else:
        window = "  A in B's window: none (A's batch was finished before B began)"
    return [
        f"fresh statefleet up (embedded Postgres, local Ray, memory queue); tenant A: a "
        f"{args.instances:,}-instance hello batch; tenant B: one single start every "
        f"{args.b_interval:g} s for {args.b_duration:g} s while A's second batch runs",
        f"  A solo (runs 1 and 3): {f['a_solo_first_completions_per_s']:,.0f} and "
        f"{f['a_solo_again_completions_per_s']:,.0f} completions/s; the reference, run "
        f"{f['a_solo_reference']}: posted in {f['a_solo_post_s']:.1f} s, done after "
        f"{f['a_solo_done_s']:.1f} s",
        f"  A with B: posted in {f['a_shared_post_s']:.1f} s, done after "
        f"{f['a_shared_done_s']:.1f} s = {f['a_shared_completions_per_s']:,.0f} completions/s "
        f"({f['a_ratio']:.0%} of the reference)",
        window,
        f"  B: {f['b_started']} started, {f['b_failed']} failed, {f['b_done']} done "
        f"({f['b_missing']} not done); request -> done p50 {f['b_p50_s']:.3f} s, "
        f"p99 {f['b_p99_s']:.3f} s, max {f['b_max_s']:.3f} s (target p99 <= 2 s: {target_b})",
        "     where it went (p50 / p99): request -> start event applied "
        f"{f['b_start_applied_p50_s']:.3f} / {f['b_start_applied_p99_s']:.3f} s; -> e-mail task "
        f"finished {f['b_task_finished_p50_s']:.3f} / {f['b_task_finished_p99_s']:.3f} s; -> "
        f"done {f['b_done_p50_s']:.3f} / {f['b_done_p99_s']:.3f} s",
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info.describe()
    with tempfile.TemporaryDirectory(prefix="statefleet-fairness-") as tmp:
        home = pathlib.Path(tmp) / "home"
        server = Server(home, free_port(), pathlib.Path(tmp) / "up.log")
        try:
            url, _ = server.wait_ready()
            saved = read_credentials(home / CREDENTIALS_FILE)
            if saved is None or not saved.admin_key:
                raise RuntimeError(f"statefleet up wrote no admin key in {home}")
            runs = asyncio.run(_runs(url, saved.admin_key, args))
        except BaseException:
            print(server.output())
            raise
        finally:
            code, strays = server.stop()
    figures = _figures(args, runs) | {"up_exit_code": code, "strays": len(strays)}
    parameters = {
        "instances": args.instances,
        "b_interval_s": args.b_interval,
        "b_duration_s": args.b_duration,
    }
    lines = table(args, figures)
    return common.finish("fairness", info, parameters, figures, lines, args.out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m benchmarks fairness [options]`` (see :func:`build_parser`)."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()

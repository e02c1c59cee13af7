"""``python -m benchmarks stall``: single starts while a 50,000-instance batch runs.

Issue 14's stall: after ~42,000 instances of a big batch, one outbox mark was blocked
94 s by another, the outbox lag reached 106 s and single ``start`` requests timed out.
This benchmark reproduces that shape against a fresh ``statefleet up`` (embedded
Postgres, local Ray, memory queue): it deploys the hello workflow, posts one batch of
``--instances`` inputs (with an ``Idempotency-Key``, in a thread), and meanwhile starts
single instances every ``--interval`` seconds until the whole batch is done, timing
each single request end to end. It prints their p50/p99/max, how many failed or took
longer than ``--slow`` seconds, the batch's time, and the outbox lag seen at the end.
Figures only: it passes or fails nothing (see docs/performance.md for what to expect).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from benchmarks import machine_info, results_io
from benchmarks.latency import percentile
from benchmarks.loadtest import Server
from statefleet.client import Client
from statefleet.embedded import free_port

HELLO = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "hello-workflow.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks stall",
        description="Single starts' latency while a big batch runs (issue 14's stall).",
    )
    parser.add_argument("--instances", type=int, default=50_000, help="size of the batch")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between singles")
    parser.add_argument("--slow", type=float, default=5.0, help="a single slower than this")
    parser.add_argument("--timeout", type=float, default=1_800.0, help="give up after (s)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="results directory")
    return parser


def _outbox_lag(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("statefleet_outbox_lag_seconds "):
            return float(line.split()[1])
    return float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    spec = json.loads(HELLO.read_text())
    with tempfile.TemporaryDirectory(prefix="statefleet-stall-") as tmp:
        home = pathlib.Path(tmp) / "home"
        server = Server(home, free_port(), pathlib.Path(tmp) / "up.log")
        try:
            url, key = server.wait_ready()
            with Client(url, api_key=key, timeout=600) as client:
                client.deploy(spec)
                inputs = [{"n": i} for i in range(args.instances)]
                batch: dict[str, Any] = {}

                def post_batch() -> None:
                    started = time.monotonic()
                    with Client(url, api_key=key, timeout=600) as own:
                        made = own.batch("hello-workflow", inputs, idempotency_key="stall")
                    batch.update(id=str(made.batch_id), post_s=time.monotonic() - started)

                poster = threading.Thread(target=post_batch, daemon=True)
                begun = time.monotonic()
                poster.start()
                latencies: list[float] = []
                failures = 0
                done_s = None
                deadline = begun + args.timeout
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    try:
                        client.start("hello-workflow", {"single": True})
                        latencies.append(time.monotonic() - started)
                    except Exception:
                        failures += 1
                    if "id" in batch and len(latencies) % 20 == 0:
                        progress = client.batch(batch["id"])
                        if progress.finished >= args.instances:
                            done_s = time.monotonic() - begun
                            break
                    time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
                poster.join(timeout=60)
                lag = _outbox_lag(url)
        finally:
            code, strays = server.stop()
    ordered = sorted(latencies)
    return {
        "instances": args.instances,
        "singles": len(latencies),
        "single_failures": failures,
        "single_p50_s": percentile(ordered, 50) if ordered else None,
        "single_p99_s": percentile(ordered, 99) if ordered else None,
        "single_max_s": ordered[-1] if ordered else None,
        "singles_slower_than_s": args.slow,
        "singles_slower": sum(1 for v in ordered if v > args.slow),
        "batch_post_s": batch.get("post_s"),
        "batch_done_s": done_s,
        "outbox_lag_end_s": lag,
        "up_exit_code": code,
        "strays": strays,
    }


def table(result: dict[str, Any]) -> list[str]:
    def seconds(value: Any) -> str:
        return "-" if value is None else f"{value:.3f} s"

    return [
        f"batch of {result['instances']:,} instances: posted in "
        f"{seconds(result['batch_post_s'])}, all finished after {seconds(result['batch_done_s'])}",
        f"single starts meanwhile: {result['singles']:,} ok, {result['single_failures']} failed",
        f"  p50 {seconds(result['single_p50_s'])}  p99 {seconds(result['single_p99_s'])}  "
        f"max {seconds(result['single_max_s'])}  slower than {result['singles_slower_than_s']:g}"
        f" s: {result['singles_slower']}",
        f"outbox lag at the end: {result['outbox_lag_end_s']:.3f} s",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks stall [options]`` (see :func:`build_parser`)."""
    args = build_parser().parse_args(argv)
    result = run(args)
    for line in table(result):
        print(line)
    path = results_io.write("stall", {"machine": machine_info.describe(), **result}, args.out)
    print(f"results: {results_io.shown(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

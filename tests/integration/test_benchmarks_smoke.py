"""The benchmark commands run end to end at a tiny size and write their results.

Each command runs as ``python -m benchmarks ...`` from the repository root, as
``make bench`` runs it. No timing is asserted: the targets are checked by running
the benchmarks themselves.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any

import orjson
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def env(postgres_dsn: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": postgres_dsn}


def bench(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "machine:" in done.stdout or args[0] == "compare"
    return done.stdout


def only_result(directory: pathlib.Path, name: str) -> dict[str, Any]:
    paths = sorted(directory.glob(f"{name}-*.json"))
    assert len(paths) == 1, paths
    result = orjson.loads(paths[0].read_bytes())
    assert result["benchmark"] == name
    assert {"machine", "parameters", "figures"} <= result.keys()
    assert result["machine"]["cores"]
    figures: dict[str, Any] = result["figures"]
    return figures


def test_transitions_hello_latency_and_compare(env: dict[str, str], tmp_path: pathlib.Path) -> None:
    out = ["--out", str(tmp_path)]
    bench(env, "transitions", "--instances", "20", "--events", "50", *out)
    figures = only_result(tmp_path, "transitions")
    assert {"engine_events_per_s", "asyncpg_batched_per_s", "ratio"} <= figures.keys()

    bench(env, "hello", "-n", "20", *out)
    assert {"seconds", "completions_per_s"} <= only_result(tmp_path, "hello").keys()

    bench(env, "latency", "--instances", "20", "--rate", "200", "--seconds", "0.25", *out)
    figures = only_result(tmp_path, "latency")
    assert {"p50_ms", "p95_ms", "p99_ms", "events"} <= figures.keys()
    assert figures["events"] == 50

    path = str(next(tmp_path.glob("hello-*.json")))
    printed = bench(env, "compare", path, path)
    assert "completions_per_s" in printed
    assert "1.000" in printed


def test_peer_dbos(env: dict[str, str], tmp_path: pathlib.Path) -> None:
    bench(env, "peer-dbos", "-n", "10", "--out", str(tmp_path))
    assert {"seconds", "completions_per_s"} <= only_result(tmp_path, "peer-dbos").keys()


def test_interpreter(env: dict[str, str]) -> None:
    assert "scenario" in bench(env, "interpreter", "--seconds", "0.02", "--no-write")

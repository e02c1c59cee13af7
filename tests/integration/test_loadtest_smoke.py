"""``python -m benchmarks.loadtest`` end to end at a tiny size, as ``make loadtest`` runs it.

It starts its own ``statefleet up`` (embedded Postgres, local Ray) on a temporary state
dir, runs Locust headless against it and stops it. No timing is asserted: only that
the run made requests, none failed, the server stopped cleanly with nothing left
running, and the result file was written.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import orjson
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--users", "2", "--spawn-rate", "2", "--run-time", "5s"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_loadtest_runs_without_failures(tmp_path: pathlib.Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadtest", *TINY, "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "machine:" in done.stdout

    paths = sorted(tmp_path.glob("loadtest-*.json"))
    assert len(paths) == 1, paths
    result = orjson.loads(paths[0].read_bytes())
    assert result["benchmark"] == "loadtest"
    assert result["parameters"]["users"] == 2
    figures = result["figures"]
    assert figures["failures"] == 0
    assert figures["requests"] > 0
    assert figures["POST /v1/definitions: requests"] >= 1
    assert figures["POST /v1/instances: requests"] > 0
    assert figures["stray_processes"] == 0

"""``python -m benchmarks fairness`` keeps working: a tiny run against a real
``statefleet up`` (figures are printed, never checked against a speed)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_fairness_benchmark_runs(tmp_path: pathlib.Path) -> None:
    command = [sys.executable, "-m", "benchmarks", "fairness", "--instances", "200"]
    command += ["--b-interval", "0.2", "--b-duration", "2", "--out", str(tmp_path)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=840, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "request -> done p50" in result.stdout
    (written,) = tmp_path.glob("fairness-*.json")
    figures = json.loads(written.read_text())["figures"]
    assert figures["b_started"] == 10, figures
    assert (figures["b_failed"], figures["b_missing"]) == (0, 0), figures
    assert figures["a_solo_completions_per_s"] > 0
    assert figures["a_shared_completions_per_s"] > 0
    assert figures["up_exit_code"] == 0
    assert figures["strays"] == 0

"""``python -m benchmarks stall`` keeps working: a tiny run against a real ``statefleet up``
(figures are printed, never checked)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_stall_benchmark_runs(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "stall", "--instances", "100", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "single starts meanwhile:" in result.stdout
    (written,) = tmp_path.glob("stall-*.json")
    figures = json.loads(written.read_text())
    assert figures["instances"] == 100
    assert figures["batch_done_s"] is not None, figures
    assert figures["singles"] > 0
    assert figures["up_exit_code"] == 0
    assert figures["strays"] == []

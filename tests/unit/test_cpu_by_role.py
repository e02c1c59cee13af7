"""The cluster benchmark's CPU-by-role meter: what it names, and that it counts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.cpu_by_role import CpuMeter, role_of


@pytest.mark.parametrize(
    ("command_line", "role"),
    [
        ("ray::PoolActor.run_batch", "pool actors"),
        ("ray::ShardActor", "shard actors"),
        ("/venv/bin/python -m statefleet worker", "workers"),
        ("/venv/bin/python -m statefleet api --port 8080", "api"),
        ("/venv/bin/python -m statefleet.mailsink 2525 /tmp/sink", "smtp sink"),
        ("postgres: postgres statefleet 127.0.0.1(5000) idle", "postgres"),
        ("/usr/bin/redis-server 127.0.0.1:6379", "redis"),
        ("/venv/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server --x", "ray daemons"),
        ("/usr/bin/python3 something_else.py", "other"),
    ],
)
def test_a_process_is_named_by_its_command_line(command_line: str, role: str) -> None:
    assert role_of(command_line) == role


def test_the_benchmark_itself_is_told_by_its_pid() -> None:
    assert role_of("python -m benchmarks cluster", benchmark_pid=41, pid=41) == "benchmark client"
    assert role_of("python -m benchmarks cluster", benchmark_pid=41, pid=42) == "other"


def test_the_cpu_a_process_spends_in_the_window_is_counted() -> None:
    meter = CpuMeter()
    meter.start()
    # A child that burns about half a second of CPU, says so, and stays alive (the
    # meter reads live processes) until it is told to go.
    burner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "end = time.process_time() + 0.5\n"
            "while time.process_time() < end: pass\n"
            "print('burnt', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert burner.stdout is not None
        assert burner.stdout.readline().strip() == "burnt"
        report = meter.stop()
    finally:
        burner.communicate("", timeout=30)
    assert report.by_role.get("other", 0.0) >= 0.4
    assert 0 < report.busy < 1.1  # cpu_times count in ticks: a short window rounds
    figures = report.figures()
    assert figures["cpu_s_other"] >= 0.4
    assert "other" in report.line(instances=100)

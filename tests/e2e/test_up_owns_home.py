"""``statefleet up`` owns its home, its port and its Postgres, and listens on loopback only.

All through the real command as a subprocess: a second ``up`` on the same home is
refused and touches nothing; a taken port is refused before anything starts; every
listening socket of the process tree (``ss -ltnp``) is bound to 127.0.0.1; and a
SIGKILLed embedded Postgres is restarted while workflows keep completing.
"""

from __future__ import annotations

import json
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from embedded_support import TreeWatcher, clean_env, spawn, state_home, wait_for_line
from up_support import cli, start_up, stop_up

from statefleet.embedded import free_port

HELLO = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hello-workflow.json"


def run_up(env: dict[str, str], port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statefleet", "up", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def listeners(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process) of every listening TCP socket that ``pids`` hold."""
    output = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True)
    found = []
    for line in output.stdout.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            fields = line.split()
            found.append((fields[3], fields[-1]))
    return found


def metric(text: str, series: str) -> float:
    """The value of one series in a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def tree(pid: int) -> set[int]:
    root = psutil.Process(pid)
    return {pid} | {child.pid for child in root.children(recursive=True)}


def postmaster(pid: int) -> psutil.Process:
    for child in psutil.Process(pid).children():
        if child.name() == "postgres":
            return child
    raise AssertionError("no postgres child")


def wait_output(log: pathlib.Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while text not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no {text!r}:\n{log.read_text(errors='replace')}"
        time.sleep(0.2)


def wait_done(env: dict[str, str], instance_id: str) -> str:
    deadline = time.monotonic() + 120
    while True:
        status = str(json.loads(cli(env, "get", instance_id, "--json"))["status"])
        if status != "running" or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_up_owns_its_home_listens_on_loopback_and_restarts_postgres(
    tmp_path: pathlib.Path,
) -> None:
    with state_home() as home:
        port = free_port()
        env = clean_env(STATEFLEET_HOME=str(home))
        log = tmp_path / "up.out"
        first, watcher, client = start_up(env, port, log)
        try:
            # Every listener of the tree (API, Postgres, Ray's GCS, raylet, workers,
            # the mail sink) on loopback; no dashboard.
            found = listeners(tree(first.pid))
            assert any(address.endswith(f":{port}") for address, _ in found), found
            assert any("postgres" in owner for _, owner in found), found
            assert any("gcs_server" in owner for _, owner in found), found
            exposed = [
                (address, owner)
                for address, owner in found
                if address.rpartition(":")[0] not in ("127.0.0.1", "[::ffff:127.0.0.1]")
            ]
            assert exposed == [], found
            assert not any("dashboard" in owner for _, owner in found), found

            # A second `up` on the same home: refused at once, naming the first.
            postgres_before = postmaster(first.pid).pid
            second = run_up(env, free_port())
            assert second.returncode == 1, second.stdout + second.stderr
            assert f"pid {first.pid}" in second.stderr, second.stderr
            assert client["STATEFLEET_URL"] in second.stderr, second.stderr
            assert "postgres" not in second.stderr.lower(), second.stderr
            assert postmaster(first.pid).pid == postgres_before

            cli(client, "deploy", str(HELLO))
            before = json.loads(cli(client, "start", "hello-workflow", "--json"))
            assert wait_done(client, before["id"]) == "done"

            # The embedded Postgres killed: restarted, said so, and work goes on.
            postmaster(first.pid).send_signal(signal.SIGKILL)
            wait_output(log, "postgres exited unexpectedly", first)
            wait_output(log, "postgres restarted", first)
            assert postmaster(first.pid).pid != postgres_before
            after = json.loads(cli(client, "start", "hello-workflow", "--json"))
            assert wait_done(client, after["id"]) == "done"
            assert json.loads(cli(client, "get", before["id"], "--json"))["status"] == "done"

            # The shards' and pools' figures, counted in Ray actors, on up's /metrics: each
            # hello's HELLO_SENT (its start was applied as it was created, by the API).
            text = httpx.get(f"{client['STATEFLEET_URL']}/metrics", timeout=10).text
            assert metric(text, 'statefleet_events_total{outcome="applied"}') >= 2, text
            runs = 'statefleet_task_runs_total{outcome="succeeded",type="EMAIL"}'
            assert metric(text, runs) >= 2, text
            assert metric(text, "statefleet_step_batch_seconds_count") >= 1, text
            assert 'statefleet_task_run_seconds_bucket{le="+Inf",type="EMAIL"}' in text
            assert 'statefleet_queue_depth{queue="workflow-orchestrator"}' in text
        finally:
            code = stop_up(first, watcher)
        assert code == 0, log.read_text(errors="replace")
        assert watcher.survivors() == []
        # The lock went with the process: the home can be taken again (checked by
        # the port probe failing, not the lock).
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        try:
            again = run_up(env, taken.getsockname()[1])
        finally:
            taken.close()
        assert "another `statefleet up`" not in again.stderr, again.stderr


def test_up_on_a_taken_port_starts_nothing(tmp_path: pathlib.Path) -> None:
    with state_home() as home:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            result = run_up(clean_env(STATEFLEET_HOME=str(home)), port)
        finally:
            taken.close()
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"127.0.0.1:{port}" in result.stderr, result.stderr
        assert "--port" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        # Nothing started: no Postgres cluster, no mail sink directory.
        assert not (home / "postgres").exists()
        assert not (home / "mail").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_up_exits_non_zero_when_its_postgres_cannot_come_back(tmp_path: pathlib.Path) -> None:
    with state_home() as home:
        log = tmp_path / "up.out"
        process = spawn(
            ["up", "--port", str(free_port())], clean_env(STATEFLEET_HOME=str(home)), log
        )
        watcher = TreeWatcher(process.pid)
        try:
            wait_for_line(log, "export STATEFLEET_API_KEY=", process)
            # The running server keeps its files open; a restart would find nothing.
            (home / "postgres").rename(home / "postgres-moved")
            postmaster(process.pid).send_signal(signal.SIGKILL)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
            watcher.stop()
        output = log.read_text(errors="replace")
        assert code == 1, output
        assert "postgres exited unexpectedly" in output
        assert "could not be restarted" in output, output
        assert "is gone" in output, output
        assert watcher.survivors(timeout=150) == []

"""SIGTERM drains ``statefleet up``: it says what it waits for, gives up after
``STATEFLEET_DRAIN_TIMEOUT_MS``, and the unfinished task runs again after a restart.
A SIGKILLed pool actor's task runs again within 30 s, not after a 5-minute lease."""

from __future__ import annotations

import json
import pathlib
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import psutil
import pytest
import up_support
from embedded_support import TreeWatcher, clean_env, state_home
from up_support import cli, stop_up

from statefleet.embedded import free_port
from tests.http_support import serving


class _Slow(BaseHTTPRequestHandler):
    """Answers only once ``release`` is set: a handler in flight for as long as needed."""

    release: ClassVar[threading.Event] = threading.Event()
    calls: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.calls.append(self.path)
        self.release.wait(60)
        body = b'{"ok": true}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the first attempt's caller (a stopped pool) is gone: expected

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def slow_server() -> Iterator[str]:
    _Slow.release = threading.Event()
    _Slow.calls = []
    with serving(_Slow) as url:
        try:
            yield f"{url}/hook"
        finally:
            _Slow.release.set()


def spec(url: str) -> dict[str, object]:
    task = {
        "type": "HTTP",
        "name": "call",
        "input": {"url": url},
        "completionEvent": "DONE",
        "timeout": 5000,
    }
    return {
        "id": "slow-http",
        "initial": "calling",
        "states": {
            "calling": {
                "entry": [{"type": "createTask", "task": task}],
                "on": {"DONE": "done"},
            },
            "done": {"type": "final"},
        },
    }


def start_up(
    home: pathlib.Path, port: int, log: pathlib.Path
) -> tuple[subprocess.Popen[bytes], TreeWatcher, dict[str, str]]:
    env = clean_env(STATEFLEET_HOME=str(home), STATEFLEET_DRAIN_TIMEOUT_MS="3000")
    return up_support.start_up(env, port, log)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_drains_says_what_it_waits_for_and_loses_nothing(
    tmp_path: pathlib.Path, slow_server: str
) -> None:
    with state_home() as home:
        port = free_port()
        first, watcher, env = start_up(home, port, tmp_path / "up1.out")
        try:
            (tmp_path / "spec.json").write_text(json.dumps(spec(slow_server)))
            cli(env, "deploy", str(tmp_path / "spec.json"))
            started = json.loads(cli(env, "start", "slow-http", "--json"))
            deadline = time.monotonic() + 60
            while not _Slow.calls:  # the handler is now in flight in the pool
                assert time.monotonic() < deadline, (tmp_path / "up1.out").read_text()
                time.sleep(0.1)
        finally:
            code = stop_up(first, watcher)
        output = (tmp_path / "up1.out").read_text()
        assert code == 0, output
        assert "drain: waiting for 0 event job(s) and 1 task job(s)" in output, output
        assert "drain: gave up after 3 s with 0 event job(s) and 1 task job(s)" in output
        assert watcher.survivors() == []

        _Slow.release.set()
        second, watcher, env = start_up(home, port, tmp_path / "up2.out")
        try:
            deadline = time.monotonic() + 120
            while True:
                got = json.loads(cli(env, "get", started["id"], "--json"))
                if got["status"] != "running":
                    break
                assert time.monotonic() < deadline, (tmp_path / "up2.out").read_text()
                time.sleep(0.5)
            assert got["status"] == "done", got
        finally:
            stop_up(second, watcher)
        assert len(_Slow.calls) >= 2  # the unfinished attempt ran again


def pool_actor(root: int) -> psutil.Process:
    for child in psutil.Process(root).children(recursive=True):
        if child.name().startswith("ray::PoolActor"):
            return child
    raise AssertionError("no pool actor process")


def wait_calls(count: int, timeout: float, log: pathlib.Path) -> None:
    deadline = time.monotonic() + timeout
    while len(_Slow.calls) < count:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_pool_actors_task_runs_again_within_30_s(
    tmp_path: pathlib.Path, slow_server: str
) -> None:
    # A task timeout of 10 minutes: before short leases, its claim outlived the pool
    # for that long; now the restarted pool gives it up at once.
    long_task = spec(slow_server)
    entry = long_task["states"]["calling"]["entry"][0]  # type: ignore[index]
    entry["task"]["timeout"] = 600_000
    with state_home() as home:
        log = tmp_path / "up.out"
        process, watcher, env = start_up(home, free_port(), log)
        try:
            (tmp_path / "spec.json").write_text(json.dumps(long_task))
            cli(env, "deploy", str(tmp_path / "spec.json"))
            started = json.loads(cli(env, "start", "slow-http", "--json"))
            wait_calls(1, 60, log)
            pool_actor(process.pid).kill()
            # Ray restarts the actor; the task runs again well before any old lease ends.
            wait_calls(2, 30, log)
            _Slow.release.set()
            deadline = time.monotonic() + 60
            while json.loads(cli(env, "get", started["id"], "--json"))["status"] == "running":
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
            assert json.loads(cli(env, "get", started["id"], "--json"))["status"] == "done"
        finally:
            stop_up(process, watcher)

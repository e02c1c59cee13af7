"""``statefleet up`` with the CLI against it; SIGKILL, restart, and the data is still there."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import up_support
from aiosmtpd.controller import Controller
from embedded_support import TreeWatcher, clean_env, state_home
from up_support import cli, stop_up

from statefleet.embedded import free_port

HELLO = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hello-workflow.json"


class _Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        return "250 OK"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    port = free_port()
    controller = Controller(_Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def start_up(
    home: pathlib.Path, port: int, smtp_port: int, log: pathlib.Path
) -> tuple[subprocess.Popen[bytes], TreeWatcher, dict[str, str]]:
    env = clean_env(
        STATEFLEET_HOME=str(home),
        STATEFLEET_SMTP_HOST="127.0.0.1",
        STATEFLEET_SMTP_PORT=str(smtp_port),
    )
    return up_support.start_up(env, port, log)


def wait_done(env: dict[str, str], instance_id: str) -> dict[str, object]:
    import time

    deadline = time.monotonic() + 120
    while True:
        found: dict[str, object] = json.loads(cli(env, "get", instance_id, "--json"))
        if found["status"] != "running" or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_up_serves_the_cli_and_survives_sigkill(tmp_path: pathlib.Path, smtp_port: int) -> None:
    with state_home() as home:
        port = free_port()
        first, watcher, env = start_up(home, port, smtp_port, tmp_path / "up1.out")
        try:
            credentials = home / "credentials.json"
            assert os.stat(credentials).st_mode & 0o777 == 0o600
            saved = json.loads(credentials.read_text())
            assert saved["apiKey"] == env["STATEFLEET_API_KEY"]
            assert saved["url"] == env["STATEFLEET_URL"]
            # No export lines and no DSN: the CLI finds this server, its key and its
            # admin key in the credentials file.
            bare = {
                k: v for k, v in env.items() if k not in ("STATEFLEET_URL", "STATEFLEET_API_KEY")
            }
            created = json.loads(cli(bare, "tenants", "create", "second", "--json"))
            assert created["apiKey"].startswith("sf_")
            cli(bare, "deploy", str(HELLO))
            started = json.loads(cli(env, "start", "hello-workflow", "--json"))
            done = wait_done(env, started["id"])
            assert done["status"] == "done", done
        finally:
            stop_up(first, watcher, signal.SIGKILL, timeout=60)
        # Postgres dies with its parent (parent-death signal), Ray's head with its driver;
        # Ray's dashboard and runtime-env agents notice their raylet is gone within a
        # minute or so, hence the long wait.
        assert watcher.survivors(timeout=150) == []

        second, watcher, env2 = start_up(home, port, smtp_port, tmp_path / "up2.out")
        try:
            assert env2["STATEFLEET_API_KEY"] == env["STATEFLEET_API_KEY"]
            again = json.loads(cli(env2, "get", started["id"], "--json"))
            assert again["status"] == "done"
            assert again["id"] == started["id"]
            history = cli(env2, "history", started["id"], "--json").splitlines()
            assert [json.loads(line)["type"] for line in history] == [
                "xstate.init",
                "WORKFLOW_START",
                "HELLO_SENT",
            ]
            # And it keeps working after the restart.
            more = json.loads(cli(env2, "start", "hello-workflow", "--json"))
            assert wait_done(env2, more["id"])["status"] == "done"
        finally:
            code = stop_up(second, watcher)
        assert code == 0, (tmp_path / "up2.out").read_text()
        assert watcher.survivors() == []


def test_worker_refuses_the_memory_driver() -> None:
    env = clean_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/x")
    result = subprocess.run(
        [sys.executable, "-m", "statefleet", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "do not use it when the API and workers run in separate processes" in result.stderr

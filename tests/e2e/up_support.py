"""``statefleet up`` as a subprocess for the e2e tests: start it and read the
connection it prints, run the CLI against it, stop it."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
from collections.abc import Mapping

from embedded_support import TreeWatcher, spawn, wait_for_line


def cli(env: dict[str, str], *args: str) -> str:
    """``statefleet ARGS`` in a subprocess; asserts it succeeded and returns its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "statefleet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def start_up(
    env: Mapping[str, str], port: int, log: pathlib.Path
) -> tuple[subprocess.Popen[bytes], TreeWatcher, dict[str, str]]:
    """Starts ``statefleet up --port PORT`` (output to ``log``) and waits for its
    ``export`` lines: the process, a watcher of its tree, and ``env`` plus
    ``STATEFLEET_URL`` / ``STATEFLEET_API_KEY`` for the CLI. If it never prints
    them, it is stopped before the error is raised."""
    process = spawn(["up", "--port", str(port)], env, log)
    watcher = TreeWatcher(process.pid)
    client = dict(env)
    try:
        for name in ("STATEFLEET_URL", "STATEFLEET_API_KEY"):
            client[name] = wait_for_line(log, f"export {name}=", process).split("=", 1)[1].strip()
    except BaseException:
        stop_up(process, watcher)
        raise
    return process, watcher, client


def stop_up(
    process: subprocess.Popen[bytes],
    watcher: TreeWatcher,
    sig: signal.Signals = signal.SIGTERM,
    timeout: float = 120,
) -> int:
    """Sends ``sig`` (a SIGTERM drains), waits for the exit and stops the watcher;
    returns the exit code."""
    process.send_signal(sig)
    code = process.wait(timeout=timeout)
    watcher.stop()
    return code

"""The Cloud Tasks emulator from PyPI (``gcloud-tasks-emulator``), in its own venv.

Why its own venv: it pins old protobuf and google-cloud-tasks that cannot live beside
ours. ``build/cloudtasks-emulator-venv`` is created on first use (``build/`` is not
committed). A machine where it cannot be installed skips the Cloud Tasks tests, except
under ``CI=true``, where it fails them.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from tests.required import unavailable

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV = ROOT / "build" / "cloudtasks-emulator-venv"
EMULATOR = VENV / "bin" / "gcloud-tasks-emulator"
PACKAGE = "gcloud-tasks-emulator==0.6.2"


class EmulatorUnavailable(RuntimeError):
    """The emulator could not be installed or did not start."""


def _ensure_installed() -> None:
    if EMULATOR.exists():
        return
    base = os.environ.get("STATEFLEET_EMULATOR_PYTHON") or sys.executable
    for command in (
        [base, "-m", "venv", "--clear", str(VENV)],
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", PACKAGE],
    ):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmulatorUnavailable(f"{' '.join(command)} failed: {result.stderr[-2000:]}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_emulator() -> Iterator[str]:
    """Start the emulator on a free port; yields ``host:port`` for the gRPC client."""
    _ensure_installed()
    port = _free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(EMULATOR), "start", "--port", str(port), "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise EmulatorUnavailable(
                        f"emulator exited {process.returncode}: {log.read()[-2000:]!r}"
                    )
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    break
                if time.monotonic() > deadline:
                    raise EmulatorUnavailable(f"emulator did not listen on {port} within 60 s")
                time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextlib.contextmanager
def emulator_for_tests() -> Iterator[str]:
    """``WORKFLOW_CLOUDTASKS_EMULATOR_HOST`` when set, else a throwaway emulator."""
    given = os.environ.get("WORKFLOW_CLOUDTASKS_EMULATOR_HOST", "").strip()
    if given:
        yield given
        return
    try:
        with running_emulator() as host:
            yield host
    except EmulatorUnavailable as error:
        unavailable("the Cloud Tasks emulator", str(error))

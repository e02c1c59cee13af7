"""Users' own task code, installed as a user installs it, run by real statefleet processes.

``examples/greeter`` is pip-installed into a temporary folder (never into the shared
virtualenv) and a module of ``@statefleet.handler`` functions is written beside it; the
processes get both through ``PYTHONPATH``, and the Ray pools they start inherit it. A
workflow of the example's ``GREET`` (an entry point function), the module's ``SHOUT``
(a decorated function, named by ``STATEFLEET_HANDLER_MODULES``) and the example's
``LEDGER`` (an entry point class whose file path arrives through
``STATEFLEET_HANDLER_ENV``) then runs under ``statefleet up`` and under
``statefleet worker`` + ``statefleet api`` with BullMQ between them.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpx
import pytest
from redis_server import redis_url_for_tests

from statefleet.client import Client
from statefleet.embedded import free_port
from tests.e2e.embedded_support import clean_env, spawn, state_home, wait_for_line

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "greeter"
STATEFLEET = [sys.executable, "-m", "statefleet"]

LOOSE_MODULE = '''
"""Handlers that are not packaged: registered by decorator, imported by every pool."""
import statefleet


@statefleet.handler("SHOUT")
async def shout(task):
    return {"loud": str(task.input["text"]).upper()}
'''

#: GREET (entry point function) -> SHOUT (decorated module) -> LEDGER (entry point class).
SPEC = {
    "id": "greet-loudly",
    "initial": "greeting",
    "context": {"name": "", "greeting": "", "loud": ""},
    "states": {
        "greeting": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {
                        "type": "GREET",
                        "name": "greet",
                        "input": {"name": {"$expr": "context.name"}},
                        "completionEvent": "GREETED",
                        "failureEvent": "GREET_FAILED",
                        "retry": {"maxAttempts": 3},
                    },
                }
            ],
            "on": {
                "GREETED": {
                    "target": "shouting",
                    "actions": [
                        {
                            "type": "assign",
                            "path": "greeting",
                            "value": {"$expr": "event.payload.greeting"},
                        }
                    ],
                },
                "GREET_FAILED": "refused",
            },
        },
        "shouting": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {
                        "type": "SHOUT",
                        "name": "shout",
                        "input": {"text": {"$expr": "context.greeting"}},
                        "completionEvent": "SHOUTED",
                    },
                }
            ],
            "on": {
                "SHOUTED": {
                    "target": "recording",
                    "actions": [
                        {"type": "assign", "path": "loud", "value": {"$expr": "event.payload.loud"}}
                    ],
                }
            },
        },
        "recording": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {
                        "type": "LEDGER",
                        "name": "record",
                        "input": {"greeting": {"$expr": "context.loud"}},
                        "completionEvent": "RECORDED",
                    },
                }
            ],
            "on": {"RECORDED": "done"},
        },
        "done": {"type": "final"},
        "refused": {"type": "final"},
    },
}


@dataclass(frozen=True)
class Installed:
    """Where the example and the loose module live, and the variables that reach them."""

    site: pathlib.Path
    loose: pathlib.Path
    ledger: pathlib.Path

    def env(self) -> dict[str, str]:
        return {
            "PYTHONPATH": f"{self.site}:{self.loose}",
            "STATEFLEET_HANDLER_MODULES": "shop_loose",
            "STATEFLEET_HANDLER_ENV": "GREETER_",
            "GREETER_LEDGER": str(self.ledger),
        }

    def ledger_lines(self) -> list[dict[str, object]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    """The example, pip-installed into a temporary folder from a copy of its source
    (a build writes into the folder it builds, and the repository stays clean)."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="sf-user-handlers-"))
    work.chmod(0o755)  # readable by the embedded Postgres' account too
    try:
        source = work / "greeter"
        shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__"))
        site, loose = work / "site", work / "loose"
        loose.mkdir()
        (loose / "shop_loose.py").write_text(LOOSE_MODULE)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        result = subprocess.run(
            [*pip, "--target", str(site), str(source)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield Installed(site, loose, work / "ledger.jsonl")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_example_package_passes_its_own_tests(installed: Installed) -> None:
    source = installed.site.parent / "greeter"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=source,
        env=clean_env(PYTHONPATH=str(installed.site)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def run_workflows(url: str, api_key: str, installed: Installed) -> None:
    """Runs the workflow once to the end and once into GREET's permanent failure."""
    with Client(url, api_key, timeout=60) as client:
        client.deploy(SPEC)
        ada = client.start("greet-loudly", {"name": "Ada"})
        nobody = client.start("greet-loudly", {"name": ""})
        done = client.wait(ada.id, timeout=180)
        refused = client.wait(nobody.id, timeout=180)
        refused_tasks = client.tasks(nobody.id)

    assert (done.status, done.value) == ("done", "done"), done
    assert done.context["loud"] == "HELLO, ADA!"
    (entry,) = [e for e in installed.ledger_lines() if e["instance"] == ada.id]
    assert entry["input"] == {"greeting": "HELLO, ADA!"}
    # PermanentTaskError: failed at the first attempt, though three were allowed.
    assert (refused.status, refused.value) == ("done", "refused"), refused
    (greet,) = refused_tasks
    assert (greet.status, greet.attempts) == ("failed", 1)
    assert greet.last_error is not None
    assert greet.last_error.startswith("PermanentTaskError: GREET needs a non-empty")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.mark.timeout(600)
def test_users_handlers_run_under_statefleet_up(
    installed: Installed, tmp_path: pathlib.Path
) -> None:
    with state_home() as home:
        env = clean_env(STATEFLEET_HOME=str(home), **installed.env())
        log = tmp_path / "up.out"
        process = spawn(["up", "--port", str(free_port())], env, log)
        try:
            found = {}
            for name in ("STATEFLEET_URL", "STATEFLEET_API_KEY"):
                line = wait_for_line(log, f"export {name}=", process)
                found[name] = line.split("=", 1)[1].strip()
            assert "ray backend" in log.read_text(), log.read_text()
            run_workflows(found["STATEFLEET_URL"], found["STATEFLEET_API_KEY"], installed)
        finally:
            stop(process)


def _wait_healthy(urls: list[str], processes: Mapping[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 180
    pending = list(urls)
    while pending:
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode}"
        try:
            if httpx.get(f"{pending[0]}/healthz", timeout=2).status_code == 200:
                pending.pop(0)
                continue
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{pending[0]} never became healthy"
        time.sleep(0.2)


@pytest.mark.timeout(600)
def test_users_handlers_run_under_statefleet_worker_and_api(
    installed: Installed, database_dsn: str, tmp_path: pathlib.Path
) -> None:
    with redis_url_for_tests() as redis_url:
        queue = {
            "WORKFLOW_QUEUE_DRIVER": "bullmq",
            "REDIS_URL": redis_url,
            "WORKFLOW_BULLMQ_PREFIX": f"users-{uuid.uuid4().hex[:8]}",
        }
        created = subprocess.run(
            [*STATEFLEET, "tenants", "create", "acme", "--json"],
            env=clean_env(DATABASE_URL=database_dsn),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        api_key = json.loads(created.stdout)["apiKey"]
        worker_port, api_port = free_port(), free_port()
        # Only the worker is told about the handlers: its Ray pools run them.
        worker_env = clean_env(
            DATABASE_URL=database_dsn,
            STATEFLEET_WORKER_PORT=str(worker_port),
            **queue,
            **installed.env(),
        )
        api_env = clean_env(DATABASE_URL=database_dsn, STATEFLEET_API_PORT=str(api_port), **queue)
        worker = spawn(["worker"], worker_env, tmp_path / "worker.out")
        api = spawn(["api"], api_env, tmp_path / "api.out")
        try:
            urls = [f"http://127.0.0.1:{worker_port}", f"http://127.0.0.1:{api_port}"]
            _wait_healthy(urls, {"worker": worker, "api": api})
            assert "(ray backend)" in (tmp_path / "worker.out").read_text()
            run_workflows(urls[1], api_key, installed)
        finally:
            stop(api, signal.SIGTERM)
            stop(worker, signal.SIGTERM)


def test_a_handler_module_that_cannot_load_stops_the_worker_at_once(
    database_dsn: str, tmp_path: pathlib.Path
) -> None:
    env = clean_env(
        DATABASE_URL=database_dsn,
        WORKFLOW_QUEUE_DRIVER="bullmq",
        REDIS_URL="redis://127.0.0.1:1",  # never reached: the check comes first
        STATEFLEET_BACKEND="local",
        STATEFLEET_HANDLER_MODULES="shop_handlers_nowhere",
    )
    result = subprocess.run(
        [*STATEFLEET, "worker"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "handler module 'shop_handlers_nowhere' cannot be imported" in result.stderr
    assert "Traceback" not in result.stderr

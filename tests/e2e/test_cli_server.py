"""The client commands as a user runs them: CLI processes against a real server process.

One ``statefleet api --allow-memory`` (the API with the engine in-process) on a
throwaway Postgres serves the whole module; its ``AI`` tasks ask a stand-in for an
OpenAI-compatible model server (no model runs here) that always proposes one
decision. Each CLI call is a process of its own with a fresh ``STATEFLEET_HOME``: a
test that wants ``statefleet up``'s credentials file writes one, as ``up`` does,
naming this server.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from embedded_support import clean_env, spawn

from statefleet.credentials import Credentials, write_credentials
from statefleet.embedded import PostgresUnavailable, free_port, throwaway_postgres
from statefleet.engine.store import migrate
from tests.http_support import serving
from tests.required import unavailable

pytestmark = pytest.mark.slow  # a server process and a CLI process per command

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
ADMIN_KEY = "sfa_cli_server_test_admin_key"
#: A HUMAN task, a one-hour timer and an event of its own, all open at once.
REVIEW = {
    "id": "review",
    "initial": "waiting",
    "states": {
        "waiting": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {"type": "HUMAN", "name": "approve", "completionEvent": "APPROVED"},
                }
            ],
            "after": {"3600000": "expired"},
            "on": {"APPROVED": "done", "CANCEL": "cancelled"},
        },
        "expired": {"type": "final"},
        "cancelled": {"type": "final"},
        "done": {"type": "final"},
    },
}
#: Three problems; each must be reported once.
BROKEN = {
    "id": "broken",
    "initial": "a",
    "guards": {"isReady": "context.ready == true"},
    "states": {
        "a": {"on": {"GO": [{"target": "nowhere"}, {"target": "b", "guard": "isRaedy"}]}},
        "b": {"on": {"BACK": {"target": "a", "guard": {"expr": "context.ready &&"}}}},
    },
}


#: What the model proposes: an event the policy of ``TRIAGE`` does not allow.
DECISION = {"event": "REFUND", "payload": {}, "reason": "charged twice", "confidence": 0.95}
TRIAGE = {
    "id": "triage",
    "initial": "deciding",
    "states": {
        "deciding": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {
                        "type": "AI",
                        "name": "classify",
                        "input": {"prompt": "Classify the ticket"},
                        "policy": {"allowedEvents": ["APPROVE"], "allowDirectEmit": True},
                        "completionEvent": "DECIDED",
                    },
                }
            ],
            "on": {"DECIDED": "decided", "APPROVE": "approved"},
        },
        "decided": {"type": "final"},
        "approved": {"type": "final"},
    },
}


class _Model(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat completions endpoint that always proposes ``DECISION``.

    No model runs on this machine; the engine's AI handler, its policy and the stored
    decision are real, which is what ``tasks ls`` reads.
    """

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": json.dumps(DECISION)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    with serving(_Model) as url:
        yield f"{url}/v1"


@dataclass(frozen=True)
class Server:
    url: str
    log: pathlib.Path


@pytest.fixture(scope="module")
def server(model_url: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="statefleet-cli-") as scratch:
        try:
            with throwaway_postgres(prefer="system") as (postgres, _):
                asyncio.run(migrate(postgres.dsn))
                port = free_port()
                env = clean_env(
                    DATABASE_URL=postgres.dsn,
                    STATEFLEET_ADMIN_KEY=ADMIN_KEY,
                    STATEFLEET_HOME=os.path.join(scratch, "server-home"),
                    STATEFLEET_AI_PROVIDER="openai",
                    STATEFLEET_AI_BASE_URL=model_url,
                    STATEFLEET_AI_API_KEY="not-needed",
                    STATEFLEET_AI_MODEL="fake-model",
                )
                log = pathlib.Path(scratch, "api.log")
                process = spawn(["api", "--allow-memory", "--port", str(port)], env, log)
                try:
                    url = f"http://127.0.0.1:{port}"
                    _wait_healthy(url, process, log)
                    yield Server(url, log)
                finally:
                    process.terminate()
                    process.wait(timeout=60)
        except PostgresUnavailable as error:
            unavailable("Postgres", str(error))


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: pathlib.Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"statefleet api did not come up:\n{log.read_text(errors='replace')}")


@pytest.fixture
def home(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "home"


def cli(home: pathlib.Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``statefleet ARGS`` with nothing set but ``STATEFLEET_HOME`` and ``env``."""
    ambient = ("DATABASE_URL", "STATEFLEET_URL", "STATEFLEET_API_KEY", "STATEFLEET_ADMIN_KEY")
    base = {k: v for k, v in os.environ.items() if k not in ambient}
    return subprocess.run(
        [sys.executable, "-m", "statefleet", *args],
        env={**base, "STATEFLEET_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    return result.stdout


def as_up_would(home: pathlib.Path, server: Server, api_key: str | None = None) -> None:
    """The credentials file ``statefleet up`` would have written for this server."""
    home.mkdir(parents=True, exist_ok=True)
    write_credentials(
        home / "credentials.json", Credentials(server.url, "default", api_key, ADMIN_KEY)
    )


@pytest.fixture
def tenant(server: Server, home: pathlib.Path) -> str:
    """A fresh tenant's key, made through the admin API with up's credentials only."""
    as_up_would(home, server)
    created = json.loads(ok(cli(home, "tenants", "create", "cli-test", "--json")))
    key: str = created["apiKey"]
    as_up_would(home, server, key)
    return key


def spec_file(tmp_path: pathlib.Path, spec: dict[str, Any]) -> str:
    path = tmp_path / f"{spec['id']}.json"
    path.write_text(json.dumps(spec))
    return str(path)


# --- no ceremony ---------------------------------------------------------------------


def test_tenants_and_keys_work_through_the_admin_api_without_a_dsn(
    server: Server, home: pathlib.Path
) -> None:
    as_up_would(home, server)
    created = json.loads(ok(cli(home, "tenants", "create", "acme", "--json")))
    tenant_id = created["tenantId"]
    second = json.loads(ok(cli(home, "keys", "create", tenant_id, "--json")))
    listed = json.loads(ok(cli(home, "keys", "list", tenant_id, "--json")))["items"]
    assert {item["keyId"] for item in listed} >= {second["keyId"]}
    assert ok(cli(home, "keys", "revoke", tenant_id, second["keyId"])) == (
        f"revoked {second['keyId']}\n"
    )
    revoked = cli(home, "ls", "--url", server.url, "--api-key", second["apiKey"])
    assert revoked.returncode == 1
    assert "the server does not know this key" in revoked.stderr
    # The new tenant's first key works from the environment, with no credentials file.
    fresh = home.parent / "elsewhere"
    ok(cli(fresh, "ls", STATEFLEET_URL=server.url, STATEFLEET_API_KEY=created["apiKey"]))


def test_with_up_credentials_the_cli_needs_no_url_and_no_key(
    server: Server, home: pathlib.Path, tenant: str
) -> None:
    assert ok(cli(home, "ls")) == "(none)\n"


def test_no_key_anywhere_says_where_keys_come_from(server: Server, home: pathlib.Path) -> None:
    result = cli(home, "ls", STATEFLEET_URL=server.url)
    assert result.returncode == 1
    assert result.stderr.startswith("error: unauthorized:")
    assert "no API key was sent" in result.stderr
    assert "statefleet tenants create NAME" in result.stderr


def test_no_server_asks_whether_up_is_running(home: pathlib.Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli(home, "ls", STATEFLEET_URL=url, STATEFLEET_API_KEY="sf_a_b")
    assert result.returncode == 1
    assert f"is `statefleet up` running? ({url})" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_url_ending_in_v1_says_drop_it(server: Server, home: pathlib.Path, tenant: str) -> None:
    result = cli(home, "ls", STATEFLEET_URL=f"{server.url}/v1")
    assert result.returncode == 1
    assert "drop /v1" in result.stderr
    assert f"(use {server.url})" in result.stderr


# --- everyday commands ------------------------------------------------------------------


def test_deploy_reports_each_problem_once(
    server: Server, home: pathlib.Path, tenant: str, tmp_path: pathlib.Path
) -> None:
    path = spec_file(tmp_path, BROKEN)
    validated = cli(home, "validate", path)
    problems = validated.stderr.splitlines()
    assert validated.returncode == 1
    assert len(problems) == 3
    deployed = cli(home, "deploy", path)
    assert deployed.returncode == 1
    lines = deployed.stderr.splitlines()
    assert lines[0] == "error: invalid_spec: 3 problems:"
    assert [line.strip() for line in lines[1:]] == problems


def test_definitions_ls_and_get(
    server: Server, home: pathlib.Path, tenant: str, tmp_path: pathlib.Path
) -> None:
    ok(cli(home, "deploy", str(FIXTURES / "hello-workflow.json")))
    rows = ok(cli(home, "definitions", "ls")).splitlines()
    assert rows[0].split() == ["KEY", "VERSION", "CHECKSUM", "CREATED"]
    assert [row.split()[:2] for row in rows[1:]] == [["hello-workflow", "1"]]
    shown = json.loads(ok(cli(home, "definitions", "get", "hello-workflow", "--json")))
    assert shown["spec"] == json.loads((FIXTURES / "hello-workflow.json").read_text())
    assert "version:    1" in ok(cli(home, "definitions", "get", "hello-workflow"))


def test_start_wait_that_times_out_says_what_the_instance_waits_for(
    server: Server, home: pathlib.Path, tenant: str, tmp_path: pathlib.Path
) -> None:
    ok(cli(home, "deploy", spec_file(tmp_path, REVIEW)))
    started = json.loads(ok(cli(home, "start", "review", "--idempotency-key", "r1", "--json")))
    deadline = time.monotonic() + 60
    while True:  # the entry's task and timer are written by the instance's first step
        tasks = [
            json.loads(line)
            for line in ok(cli(home, "tasks", "ls", started["id"], "--json")).splitlines()
        ]
        if len(tasks) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    human = next(t for t in tasks if t["type"] == "HUMAN")
    timer = next(t for t in tasks if t["kind"] == "timer")
    waited = cli(home, "start", "review", "--idempotency-key", "r1", "--wait", "--timeout", "0.5")
    assert waited.returncode == 1
    assert f"id:         {started['id']}" in waited.stdout
    lines = waited.stderr.splitlines()
    assert lines[0].startswith(f"error: timeout: instance {started['id']} is still running")
    assert lines[0].endswith("in state waiting; it waits for")
    from datetime import datetime

    run_at = datetime.fromisoformat(timer["runAt"].replace("Z", "+00:00")).isoformat()
    assert sorted(lines[1:]) == sorted([
        f"  the HUMAN task approve ({human['id']}): "
        f"statefleet tasks complete {human['id']} --output JSON",
        f"  a timer until {run_at}",
        f"  an event it can take: CANCEL (statefleet send {started['id']} TYPE)",
    ])  # fmt: skip


def test_batch_no_watch_prints_the_ids_it_started(
    server: Server, home: pathlib.Path, tenant: str, tmp_path: pathlib.Path
) -> None:
    ok(cli(home, "deploy", spec_file(tmp_path, REVIEW)))
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(f'{{"n": {n}}}\n' for n in range(5)))
    result = cli(home, "batch", "review", str(inputs), "--chunk-size", "2", "--no-watch")
    ids = ok(result).splitlines()
    assert len(ids) == 3
    assert f"statefleet batch status {' '.join(ids)}" in result.stderr
    progress = [
        json.loads(line) for line in ok(cli(home, "batch", "status", *ids, "--json")).splitlines()
    ]
    assert [p["batchId"] for p in progress] == ids
    assert sum(p["total"] for p in progress) == 5


def test_priority_reaches_the_server_and_shows_in_the_views(
    server: Server, home: pathlib.Path, tenant: str, tmp_path: pathlib.Path
) -> None:
    ok(cli(home, "deploy", spec_file(tmp_path, REVIEW)))
    started = json.loads(ok(cli(home, "start", "review", "--priority", "3", "--json")))
    assert started["priority"] == 3
    plain = json.loads(ok(cli(home, "start", "review", "--json")))
    assert plain["priority"] == 10
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"n": 1}\n{"n": 2}\n')
    (urgent,) = ok(
        cli(home, "batch", "review", str(inputs), "--priority", "8", "--no-watch")
    ).split()
    (default,) = ok(
        cli(home, "batch", "review", str(inputs), "--idempotency-key", "b2", "--no-watch")
    ).split()
    progress = [
        json.loads(line)
        for line in ok(cli(home, "batch", "status", urgent, default, "--json")).splitlines()
    ]
    assert [(p["batchId"], p["priority"]) for p in progress] == [(urgent, 8), (default, 5)]
    refused = cli(home, "start", "review", "--priority", "11")
    assert refused.returncode == 2
    assert "--priority" in refused.stderr


def test_tenants_scheduling_shows_and_changes_only_what_was_given(
    server: Server, home: pathlib.Path
) -> None:
    as_up_would(home, server)
    tenant_id = json.loads(ok(cli(home, "tenants", "create", "fair", "--json")))["tenantId"]

    def scheduling(*options: str) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(
            ok(cli(home, "tenants", "scheduling", tenant_id, *options, "--json"))
        )
        return answer

    assert scheduling() == {"weight": 1, "taskLimits": {}}
    assert scheduling(
        "--weight", "4",
        "--task-limit", "EMAIL:concurrency=5,perSecond=50",
        "--task-limit", "AI:concurrency=1",
    ) == {
        "weight": 4,
        "taskLimits": {"EMAIL": {"concurrency": 5, "perSecond": 50}, "AI": {"concurrency": 1}},
    }  # fmt: skip
    # Only what is given changes: AI's limit is replaced, the weight and EMAIL are kept.
    changed = scheduling("--task-limit", "AI:perSecond=2.5")
    assert changed == {
        "weight": 4,
        "taskLimits": {"EMAIL": {"concurrency": 5, "perSecond": 50}, "AI": {"perSecond": 2.5}},
    }
    assert scheduling() == changed
    shown = ok(cli(home, "tenants", "scheduling", tenant_id)).splitlines()
    assert shown == [
        f"tenant {tenant_id}  weight 4",
        "AI  perSecond 2.5",
        "EMAIL  concurrency 5  perSecond 50",
    ]
    assert scheduling("--clear-limits") == {"weight": 4, "taskLimits": {}}
    assert scheduling("--clear-limits", "--task-limit", "SMS:concurrency=2") == {
        "weight": 4,
        "taskLimits": {"SMS": {"concurrency": 2}},
    }
    bad = cli(home, "tenants", "scheduling", tenant_id, "--task-limit", "SMS:concurrency=0")
    assert bad.returncode == 2
    assert "greater than or equal to 1" in bad.stderr
    missing = cli(home, "tenants", "scheduling", "nobody", "--weight", "2")
    assert missing.returncode == 1
    assert "no tenant 'nobody'" in missing.stderr
    assert scheduling()["taskLimits"] == {"SMS": {"concurrency": 2}}


def test_tasks_ls_shows_the_ai_decision_the_engine_stored(
    server: Server, home: pathlib.Path, tenant: str, tmp_path: pathlib.Path
) -> None:
    ok(cli(home, "deploy", spec_file(tmp_path, TRIAGE)))
    done = json.loads(ok(cli(home, "start", "triage", "--wait", "--timeout", "60", "--json")))
    assert done["value"] == "decided"  # the completion event, not the refused REFUND
    table, *decisions = ok(cli(home, "tasks", "ls", done["id"])).split("\n\n")
    header, row = table.splitlines()
    assert header.split()[-1] == "DECISION"
    assert row.endswith("REFUND not emitted")
    task_id = row.split()[0]
    assert decisions == [
        f"decision of classify ({task_id}): REFUND, confidence 0.95, rejected: "
        "event 'REFUND' is not in allowedEvents (allowed: APPROVE)\n"
        "  the model's reason: charged twice\n"
    ]

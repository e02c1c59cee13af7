"""The client commands as a user types them: arguments, output, exit codes.

The server is an ``httpx.MockTransport`` fake handed to the commands as click's
context object (``invoke(..., obj=transport)``), so these tests pin the CLI's
parsing and formatting only; what the real server answers is covered by
``tests/integration/test_client_e2e.py``, and ``tests/e2e/test_cli_server.py`` drives these
commands as processes against a real ``statefleet api`` process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from statefleet.commands.client_cmds import register

HELLO = Path(__file__).resolve().parents[1] / "fixtures" / "hello-workflow.json"
CREATED = "2025-01-01T00:00:00Z"
Handler = Callable[[httpx.Request], httpx.Response]


def instance(id: str = "i1", status: str = "running") -> dict[str, Any]:
    return {
        "id": id,
        "tenantId": "t1",
        "definitionKey": "hello-workflow",
        "definitionVersion": 1,
        "status": status,
        "value": "notify",
        "context": {"greeted": False},
        "output": None,
        "error": None,
        "createdAt": CREATED,
        "updatedAt": CREATED,
    }


def task(status: str = "done") -> dict[str, Any]:
    return {"id": "t9", "instanceId": "i1", "type": "HUMAN", "name": "approve",
            "status": status, "createdAt": CREATED}  # fmt: skip


def error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, **extra}})


class Server:
    """Routes ``(method, path)`` to canned answers and records the requests."""

    def __init__(self, routes: dict[tuple[str, str], Handler | httpx.Response]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return error(404, "not_found", f"no route {request.url.path}")
        return answer(request) if callable(answer) else answer

    def body(self, n: int = -1) -> Any:
        return json.loads(self.requests[n].content)


@pytest.fixture(autouse=True)
def no_ambient_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the developer's variables nor their ``statefleet up`` may leak in."""
    monkeypatch.delenv("STATEFLEET_URL", raising=False)
    monkeypatch.delenv("STATEFLEET_API_KEY", raising=False)
    monkeypatch.delenv("STATEFLEET_ADMIN_KEY", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("STATEFLEET_HOME", str(tmp_path / "home"))


@pytest.fixture
def cli() -> click.Group:
    group = click.Group("statefleet")
    register(group)
    return group


def run(cli: click.Group, server: Server | Handler, *args: str, **kwargs: Any) -> Result:
    transport = httpx.MockTransport(server)
    return CliRunner().invoke(cli, list(args), obj=transport, **kwargs)


def test_deploy_prints_the_version(cli: click.Group) -> None:
    answer = {"id": "d1", "key": "hello-workflow", "version": 1, "checksum": "abcdef0123456789",
              "createdAt": CREATED}  # fmt: skip
    server = Server({("POST", "/v1/definitions"): httpx.Response(201, json=answer)})
    result = run(cli, server, "deploy", str(HELLO), "--api-key", "sf_a_b")
    assert result.exit_code == 0, result.output
    assert result.stdout == "deployed hello-workflow v1 (abcdef012345)\n"
    assert server.body()["spec"]["id"] == "hello-workflow"
    assert server.requests[0].headers["authorization"] == "Bearer sf_a_b"


def test_an_invalid_spec_lists_its_paths_and_exits_1(cli: click.Group) -> None:
    details = [{"path": "states.start.on.GO.target", "message": "does not resolve"}]
    answer = error(422, "invalid_spec", "spec validation failed", details=details)
    result = run(cli, Server({("POST", "/v1/definitions"): answer}), "deploy", str(HELLO))
    assert result.exit_code == 1
    assert result.stderr == (
        "error: invalid_spec: 1 problem:\n  states.start.on.GO.target: does not resolve\n"
    )
    assert result.stdout == ""


def test_start_sends_input_and_idempotency_key_and_prints_json(cli: click.Group) -> None:
    server = Server({("POST", "/v1/instances"): httpx.Response(201, json=instance())})
    result = run(
        cli, server, "start", "hello-workflow", "--input", '{"name": "Ada"}',
        "--idempotency-key", "k1", "--version", "1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["definitionKey"] == "hello-workflow"
    assert server.body() == {"definitionKey": "hello-workflow", "version": 1,
                             "input": {"name": "Ada"}, "idempotencyKey": "k1"}  # fmt: skip


def test_start_refuses_bad_input_before_any_request(cli: click.Group) -> None:
    server = Server({})
    result = run(cli, server, "start", "hello-workflow", "--input", "[1]")
    assert result.exit_code == 1
    assert "--input must be a JSON object, not list" in result.stderr
    assert "Traceback" not in result.output
    assert server.requests == []


def test_start_wait_polls_until_done(cli: click.Group) -> None:
    statuses = iter(["running", "done"])
    server = Server({
        ("POST", "/v1/instances"): httpx.Response(201, json=instance()),
        ("GET", "/v1/instances/i1"): lambda _: httpx.Response(
            200, json=instance(status=next(statuses))
        ),
    })  # fmt: skip
    result = run(cli, server, "start", "hello-workflow", "--wait")
    assert result.exit_code == 0, result.output
    assert "status:     done" in result.stdout


def test_api_errors_print_code_and_message(cli: click.Group) -> None:
    answer = error(404, "unknown_instance", "no instance 'nope'")
    result = run(cli, Server({("GET", "/v1/instances/nope"): answer}), "get", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: unknown_instance: no instance 'nope'\n"


def test_an_unreachable_server_is_one_line(cli: click.Group) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = run(cli, refuse, "get", "i1", "--url", "http://127.0.0.1:1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unreachable: cannot connect (connection refused)")
    assert "is `statefleet up` running? (http://127.0.0.1:1)" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_url_ending_in_v1_is_refused_with_the_fix(cli: click.Group) -> None:
    server = Server({})
    result = run(cli, server, "get", "i1", "--url", "http://127.0.0.1:8080/v1")
    assert result.exit_code == 1
    assert "drop /v1" in result.stderr
    assert "(use http://127.0.0.1:8080)" in result.stderr
    assert server.requests == []


def test_a_401_says_where_keys_come_from(cli: click.Group) -> None:
    answer = error(401, "unauthorized", "unknown or revoked API key")
    result = run(cli, Server({("GET", "/v1/instances/i1"): answer}), "get", "i1",
                 "--api-key", "sf_old_key")  # fmt: skip
    assert result.exit_code == 1
    first, hint = result.stderr.splitlines()
    assert first == "error: unauthorized: unknown or revoked API key"
    assert hint.startswith("the server does not know this key")
    assert "statefleet tenants create NAME" in hint
    assert "credentials.json" in hint


def test_url_and_key_come_from_the_environment(cli: click.Group) -> None:
    server = Server({("GET", "/v1/instances/i1"): httpx.Response(200, json=instance())})
    env = {"STATEFLEET_URL": "http://sf.example:9000", "STATEFLEET_API_KEY": "sf_x_y"}
    result = run(cli, server, "get", "i1", env=env)
    assert result.exit_code == 0, result.output
    assert str(server.requests[0].url) == "http://sf.example:9000/v1/instances/i1"
    assert server.requests[0].headers["authorization"] == "Bearer sf_x_y"


def test_ls_stops_at_limit_and_prints_a_table(cli: click.Group) -> None:
    page = {"items": [instance(f"i{n}") for n in range(5)], "nextCursor": "more"}
    server = Server({("GET", "/v1/instances"): httpx.Response(200, json=page)})
    result = run(cli, server, "ls", "--limit", "3", "--status", "running")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "DEFINITION", "STATUS", "VALUE", "CREATED"]
    assert [line.split()[0] for line in lines[1:]] == ["i0", "i1", "i2"]
    assert len(server.requests) == 1
    assert server.requests[0].url.params["status"] == "running"


def test_history_json_is_json_lines(cli: click.Group) -> None:
    entries = [{"seq": n, "type": "E", "createdAt": CREATED} for n in range(3)]
    page = {"items": entries, "nextCursor": None}
    server = Server({("GET", "/v1/instances/i1/history"): httpx.Response(200, json=page)})
    result = run(cli, server, "history", "i1", "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [0, 1, 2]


def test_tasks_complete_sends_the_output(cli: click.Group) -> None:
    server = Server({("POST", "/v1/tasks/t9/complete"): httpx.Response(200, json=task())})
    result = run(cli, server, "tasks", "complete", "t9", "--output", '{"ok": true}')
    assert result.exit_code == 0, result.output
    assert result.stdout == "task t9 (HUMAN approve): done\n"
    assert server.body() == {"output": {"ok": True}}


def test_tasks_ls_prints_a_table(cli: click.Group) -> None:
    page = {"items": [task("pending")]}
    server = Server({("GET", "/v1/instances/i1/tasks"): httpx.Response(200, json=page)})
    result = run(cli, server, "tasks", "ls", "i1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[:4] == ["t9", "HUMAN", "approve", "pending"]


def batch_server(finished_after: int = 1) -> Server:
    """Batches that report every instance done from the ``finished_after``-th poll."""
    started: dict[str, int] = {}
    polls: dict[str, int] = {}

    def create(request: httpx.Request) -> httpx.Response:
        batch_id = f"b{len(started) + 1}"
        started[batch_id] = len(json.loads(request.content)["inputs"])
        return httpx.Response(201, json={"batchId": batch_id, "count": started[batch_id]})

    def progress(request: httpx.Request) -> httpx.Response:
        batch_id = request.url.path.rsplit("/", 1)[1]
        polls[batch_id] = polls.get(batch_id, 0) + 1
        total = started.get(batch_id, 4)
        done = total if polls[batch_id] >= finished_after else 0
        counts = {"running": total - done, "done": done, "failed": 0, "cancelled": 0}
        return httpx.Response(200, json={"batchId": batch_id, "total": total, "counts": counts})

    routes: dict[tuple[str, str], Handler | httpx.Response] = {("POST", "/v1/batches"): create}
    routes.update({("GET", f"/v1/batches/b{n}"): progress for n in range(1, 5)})
    return Server(routes)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "inputs.jsonl"
    path.write_text("".join(f'{{"n": {n}}}\n' for n in range(5)) + "\n# a comment\n")
    return path


def test_batch_short_form_starts_chunks_and_watches_to_the_end(
    cli: click.Group, inputs: Path
) -> None:
    server = batch_server(finished_after=2)
    result = run(
        cli, server, "batch", "hello-workflow", str(inputs), "--chunk-size", "2",
        "--poll-interval", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "5 instances: 5 done, 0 failed, 0 cancelled\n"
    posted = [json.loads(r.content)["inputs"] for r in server.requests if r.method == "POST"]
    assert posted == [[{"n": 0}, {"n": 1}], [{"n": 2}, {"n": 3}], [{"n": 4}]]


def test_batch_json_prints_the_started_batches(cli: click.Group, inputs: Path) -> None:
    result = run(cli, batch_server(), "batch", "start", "hello-workflow", str(inputs), "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"batchId": "b1", "count": 5}
    ]


def test_a_bad_inputs_line_starts_nothing(cli: click.Group, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"n": 1}\n[2]\n')
    server = batch_server()
    result = run(cli, server, "batch", "hello-workflow", str(path))
    assert result.exit_code == 1
    assert "bad.jsonl, line 2: an input is a JSON object" in result.stderr
    assert server.requests == []


def test_ctrl_c_leaves_the_batch_running_and_says_how_to_resume(
    cli: click.Group, inputs: Path
) -> None:
    server = batch_server()

    def interrupt(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    server.routes[("GET", "/v1/batches/b1")] = interrupt
    result = run(cli, server, "batch", "hello-workflow", str(inputs))
    assert result.exit_code == 130
    assert "statefleet batch status b1" in result.stderr
    assert [r.method for r in server.requests] == ["POST", "GET"]  # nothing was cancelled


def test_batch_status_resumes_and_json_reads_once(cli: click.Group) -> None:
    server = batch_server(finished_after=3)
    watched = run(cli, server, "batch", "status", "b1", "b2", "--poll-interval", "0")
    assert watched.exit_code == 0, watched.output
    assert watched.stdout == "8 instances: 8 done, 0 failed, 0 cancelled\n"
    once = run(cli, batch_server(finished_after=2), "batch", "status", "b1", "--json")
    assert json.loads(once.stdout)["counts"]["running"] == 4


def test_batch_no_watch_prints_the_batch_ids_as_its_help_says(
    cli: click.Group, inputs: Path
) -> None:
    help_text = run(cli, Server({}), "batch", "start", "--help").stdout
    assert "Print the batch ids, one per line" in help_text
    result = run(
        cli, batch_server(), "batch", "hello-workflow", str(inputs), "--chunk-size", "2",
        "--no-watch",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "b1\nb2\nb3\n"
    assert "statefleet batch status b1 b2 b3" in result.stderr


def test_the_progress_bar_stays_whole_at_80_columns() -> None:
    import io

    from rich.console import Console

    from statefleet.commands.client_cmds import _progress_bar

    screen = io.StringIO()
    console = Console(file=screen, width=80, color_system=None)
    bar = _progress_bar(console)
    bar.add_task("a-definition-with-a-long-key", total=10_000, completed=6_210,
                 started=10_000, done=6_198, failed=12)  # fmt: skip
    bar.add_task("hello-workflow", total=100_000, started=50_000, done=0, failed=0)
    console.print(bar.make_tasks_table(bar.tasks))
    finishing, starting = screen.getvalue().splitlines()
    assert len(finishing) <= 80
    assert "6,210/10,000 failed 12" in finishing
    assert "ETA" in finishing
    assert "━" in finishing  # the bar itself keeps some room
    assert "starting 50,000/100,000" in starting


# --- definitions ----------------------------------------------------------------

DEFINITION = {"id": "d1", "key": "hello-workflow", "version": 2, "checksum": "abcdef0123456789",
              "createdAt": CREATED}  # fmt: skip


def test_definitions_ls_prints_a_table_and_json_lines(cli: click.Group) -> None:
    server = Server({("GET", "/v1/definitions"): httpx.Response(200, json={"items": [DEFINITION]})})
    table = run(cli, server, "definitions", "ls")
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split() == ["KEY", "VERSION", "CHECKSUM", "CREATED"]
    assert table.stdout.splitlines()[1].split()[:3] == ["hello-workflow", "2", "abcdef012345"]
    lines = run(cli, server, "definitions", "ls", "--json").stdout.splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["hello-workflow"]


def test_definitions_get_shows_the_spec_of_a_version(cli: click.Group) -> None:
    spec = json.loads(HELLO.read_text())
    answer = httpx.Response(200, json={**DEFINITION, "spec": spec})
    server = Server({("GET", "/v1/definitions/hello-workflow/versions/2"): answer})
    shown = run(cli, server, "definitions", "get", "hello-workflow", "--version", "2")
    assert shown.exit_code == 0, shown.output
    head, spec_text = shown.stdout.split("spec:\n")
    assert "version:    2" in head
    assert json.loads(spec_text) == spec
    as_json = run(cli, server, "definitions", "get", "hello-workflow", "--version", "2", "--json")
    assert json.loads(as_json.stdout)["spec"] == spec


def test_definitions_get_of_an_unknown_key_is_one_error(cli: click.Group) -> None:
    result = run(cli, Server({}), "definitions", "get", "nope")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: not_found:")


# --- start --wait: what it waits for ----------------------------------------------

WAITING_SPEC = {
    "id": "review",
    "initial": "waiting",
    "states": {
        "waiting": {"on": {"APPROVED": "done", "CANCEL": "done", "SENT": "waiting"}},
        "done": {"type": "final"},
    },
}


def open_tasks() -> list[dict[str, Any]]:
    return [
        {**task("pending"), "id": "h1", "name": "approve", "completionEvent": "APPROVED"},
        {**task("pending"), "id": "m1", "type": "timer", "kind": "timer", "name": None,
         "runAt": "2030-01-01T12:00:00Z"},
        {**task("running"), "id": "e1", "type": "EMAIL", "name": "notify", "attempts": 2,
         "maxAttempts": 3, "lastError": "SMTP 451", "completionEvent": "SENT"},
        {**task("succeeded"), "id": "old", "type": "NOOP", "name": "earlier"},
    ]  # fmt: skip


def test_start_wait_that_times_out_says_what_the_instance_waits_for(cli: click.Group) -> None:
    waiting = {**instance(), "definitionKey": "review", "value": "waiting"}
    server = Server({
        ("POST", "/v1/instances"): httpx.Response(201, json=waiting),
        ("GET", "/v1/instances/i1"): httpx.Response(200, json=waiting),
        ("GET", "/v1/definitions/review/versions/1"): httpx.Response(
            200, json={**DEFINITION, "key": "review", "version": 1, "spec": WAITING_SPEC}
        ),
        ("GET", "/v1/instances/i1/tasks"): httpx.Response(200, json={"items": open_tasks()}),
    })  # fmt: skip
    result = run(cli, server, "start", "review", "--wait", "--timeout", "0")
    assert result.exit_code == 1
    assert "id:         i1" in result.stdout  # the instance, to act on it
    assert result.stderr.splitlines() == [
        "error: timeout: instance i1 is still running after 0s, in state waiting; it waits for",
        "  the HUMAN task approve (h1): statefleet tasks complete h1 --output JSON",
        "  a timer until 2030-01-01T12:00:00+00:00",
        "  the EMAIL task notify (e1, running, attempt 2 of 3); last error: SMTP 451",
        "  an event it can take: CANCEL (statefleet send i1 TYPE)",
    ]


# --- tasks ls: an AI task's decision ------------------------------------------------


def ai_task(id: str, name: str, **output: Any) -> dict[str, Any]:
    return {**task("succeeded"), "id": id, "type": "AI", "name": name, "output": output}


def test_tasks_ls_shows_each_ai_decision_and_why(cli: click.Group) -> None:
    refused = ai_task(
        "a1", "triage",
        decision={"event": "REFUND", "payload": {}, "reason": "charged twice", "confidence": 0.99},
        emitted=False, rejected=True,
        rejectionReason="event 'REFUND' is not in allowedEvents (allowed: APPROVE)",
    )  # fmt: skip
    sent = ai_task(
        "a2", "second-look",
        decision={"event": "APPROVE", "payload": {}, "reason": "fine", "confidence": 0.9},
        emitted=True, rejected=False, rejectionReason=None,
    )  # fmt: skip
    page = {"items": [refused, sent, task("pending")]}
    server = Server({("GET", "/v1/instances/i1/tasks"): httpx.Response(200, json=page)})
    result = run(cli, server, "tasks", "ls", "i1")
    assert result.exit_code == 0, result.output
    table, *decisions = result.stdout.split("\n\n")
    rows = table.splitlines()
    assert rows[0].split()[-1] == "DECISION"
    assert rows[1].endswith("REFUND not emitted")
    assert rows[2].endswith("APPROVE emitted")
    assert decisions == [
        "decision of triage (a1): REFUND, confidence 0.99, rejected: "
        "event 'REFUND' is not in allowedEvents (allowed: APPROVE)\n"
        "  the model's reason: charged twice",
        "decision of second-look (a2): APPROVE, confidence 0.9, emitted\n"
        "  the model's reason: fine\n",
    ]


# --- tenants and keys without a database -------------------------------------------


@pytest.fixture
def operator_cli() -> click.Group:
    from statefleet.commands import tenants

    group = click.Group("statefleet")
    tenants.register(group)
    return group


def test_tenants_create_uses_the_admin_api_of_statefleet_up(operator_cli: click.Group) -> None:
    from statefleet.credentials import Credentials, credentials_path, write_credentials

    path = credentials_path()
    path.parent.mkdir(parents=True)
    write_credentials(path, Credentials("http://sf.test:8080", "default", "sf_t_k", "sfa_admin"))
    created = httpx.Response(201, json={"tenantId": "t-acme", "apiKey": "sf_new_key"})
    server = Server({("POST", "/v1/admin/tenants"): created})
    result = run(operator_cli, server, "tenants", "create", "acme", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"tenantId": "t-acme", "apiKey": "sf_new_key"}
    assert str(server.requests[0].url) == "http://sf.test:8080/v1/admin/tenants"
    assert server.requests[0].headers["authorization"] == "Bearer sfa_admin"
    assert server.body() == {"name": "acme"}


def test_keys_without_a_database_or_an_admin_key_say_what_to_give(
    operator_cli: click.Group,
) -> None:
    server = Server({})
    result = run(operator_cli, server, "keys", "list", "t-acme")
    assert result.exit_code == 1
    assert "no admin key for http://127.0.0.1:8080" in result.stderr
    assert "--admin-key" in result.stderr
    assert "--database-url" in result.stderr
    assert server.requests == []

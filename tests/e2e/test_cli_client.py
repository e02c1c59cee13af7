"""The client commands as a user types them: arguments, output, exit codes.

The server is an ``httpx.MockTransport`` fake handed to the commands as click's
context object (``invoke(..., obj=transport)``), so these tests pin the CLI's
parsing and formatting only; what the real server answers is covered by
``tests/integration/test_client_e2e.py``. Driving these commands against a real
server process through ``--url`` is left for when the server lands.
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
        "error: invalid_spec: spec validation failed\n"
        "  states.start.on.GO.target: does not resolve\n"
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
    assert result.stderr.startswith("error: unreachable: cannot reach http://127.0.0.1:1")


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

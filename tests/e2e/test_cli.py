"""The ``statefleet`` command line, run as a user runs it: a real process per call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import statefleet
from tests.required import unavailable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HELLO = FIXTURES / "hello-workflow.json"
HELLO_EVENTS = FIXTURES / "hello-events.jsonl"
ORDER = FIXTURES / "order-workflow.json"
ORDER_EVENTS = FIXTURES / "order-events.jsonl"
CONSOLE_SCRIPT = Path(sys.executable).with_name("statefleet")


def run(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statefleet", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def steps(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_clean_failure(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr


# --- the group ----------------------------------------------------------------


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout == f"statefleet {statefleet.__version__}\n"


def test_the_console_script_is_the_same_cli() -> None:
    if not CONSOLE_SCRIPT.exists():
        unavailable("the statefleet console script", f"{CONSOLE_SCRIPT} (pip install -e .)")
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "validate", str(HELLO)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, "ok: hello-workflow (3 states)\n")


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("validate", "simulate", "graph"):
        assert f"  {command} " in result.stdout


# --- validate -----------------------------------------------------------------


def test_validate_hello() -> None:
    result = run("validate", HELLO)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "ok: hello-workflow (3 states)\n",
        "",
    )


def test_validate_counts_nested_states() -> None:
    result = run("validate", ORDER, "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"ok": True, "id": "order-workflow", "states": 21}


def base_spec(**state_a: Any) -> dict[str, Any]:
    return {
        "id": "m",
        "initial": "a",
        "guards": {"isReady": "context.ready == true"},
        "context": {"ready": False},
        "states": {"a": state_a, "b": {}},
    }


BAD_SPECS = [
    pytest.param(
        base_spec(on={"GO": {"target": "nowhere"}}), "states.a.on.GO.target", id="missing-target"
    ),
    pytest.param(
        base_spec(on={"GO": {"target": "b", "guard": "isRaedy"}}),
        "states.a.on.GO.guard",
        id="misspelt-guard",
    ),
    pytest.param(
        base_spec(on={"GO": {"target": "b", "guard": {"expr": "context.ready &&"}}}),
        "states.a.on.GO.guard.expr",
        id="cel-syntax-error",
    ),
    pytest.param(
        {"id": "m", "initial": "a", "states": {"a": {}, "h": {"type": "history"}}},
        "states.h",
        id="history-state",
    ),
]


@pytest.mark.parametrize(("spec", "path"), BAD_SPECS)
def test_validate_names_the_json_path_of_the_problem(
    tmp_path: Path, spec: dict[str, Any], path: str
) -> None:
    result = run("validate", write_json(tmp_path / "spec.json", spec))
    assert_clean_failure(result)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: ")


@pytest.mark.parametrize(("spec", "path"), BAD_SPECS)
def test_validate_json_lists_errors_on_stdout(
    tmp_path: Path, spec: dict[str, Any], path: str
) -> None:
    result = run("validate", "--json", write_json(tmp_path / "spec.json", spec))
    assert_clean_failure(result)
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [error["path"] for error in report["errors"]] == [path]
    assert report["errors"][0]["message"]


def test_validate_reports_every_problem_at_once(tmp_path: Path) -> None:
    spec = base_spec(on={"GO": "nowhere", "TRY": {"target": "b", "guard": "isRaedy"}})
    spec["states"]["h"] = {"type": "history"}
    result = run("validate", write_json(tmp_path / "spec.json", spec))
    assert_clean_failure(result)
    paths = [line.split(": ", 1)[0] for line in result.stderr.splitlines()]
    assert paths == ["states.a.on.GO", "states.a.on.TRY.guard", "states.h"]


def test_validate_a_missing_file(tmp_path: Path) -> None:
    result = run("validate", tmp_path / "absent.json")
    assert_clean_failure(result)
    assert "cannot read spec" in result.stderr
    assert "absent.json" in result.stderr


def test_validate_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text('{\n  "id": "m",\n  "initial": \n}\n')
    result = run("validate", path)
    assert_clean_failure(result)
    assert "invalid JSON at line 4, column 1" in result.stderr
    as_json = run("validate", "--json", path)
    assert_clean_failure(as_json)
    (error,) = json.loads(as_json.stdout)["errors"]
    assert error["path"] == ""
    assert "line 4, column 1" in error["message"]


def test_validate_a_spec_that_is_not_an_object(tmp_path: Path) -> None:
    result = run("validate", write_json(tmp_path / "spec.json", [1, 2]))
    assert_clean_failure(result)
    assert result.stderr.strip()


# --- simulate -----------------------------------------------------------------


def test_simulate_hello_to_done() -> None:
    result = run("simulate", HELLO, "--events", HELLO_EVENTS)
    assert result.returncode == 0, result.stderr
    records = steps(result)
    assert [r["step"] for r in records] == [0, 1, 2]
    assert records[0]["event"] == {"type": "xstate.init", "payload": {}}
    assert [r["event"]["type"] for r in records[1:]] == ["WORKFLOW_START", "HELLO_SENT"]
    assert [r["value"] for r in records] == ["start", "notify", "done"]
    assert [r["status"] for r in records] == ["active", "active", "done"]
    assert all(r["handled"] for r in records)
    assert records[-1]["output"] == {"greeted": False}
    assert all("output" not in r for r in records[:-1])
    effects = [effect for r in records for effect in r["effects"]]
    assert effects == [
        {
            "type": "createTask",
            "task": {
                "type": "EMAIL",
                "name": "send-hello",
                "input": {"to": "user@example.com", "subject": "Hello"},
                "completionEvent": "HELLO_SENT",
            },
        }
    ]
    assert list(records[-1]) == [
        "step",
        "event",
        "value",
        "context",
        "status",
        "output",
        "effects",
        "handled",
    ]


def test_simulate_prints_compact_json_lines() -> None:
    result = run("simulate", HELLO, "--event", "WORKFLOW_START")
    assert result.stdout.splitlines()[0].startswith('{"step":0,"event":{"type":"xstate.init"')


def test_event_flags_stdin_and_files_give_the_same_steps() -> None:
    from_file = run("simulate", HELLO, "--events", HELLO_EVENTS)
    from_flags = run("simulate", HELLO, "--event", "WORKFLOW_START", "--event", "HELLO_SENT")
    stdin = '# comments and blank lines are skipped\n\n{"type": "WORKFLOW_START"}\n'
    from_both = run("simulate", HELLO, "--events", "-", "--event", "HELLO_SENT", stdin=stdin)
    assert from_file.stdout == from_flags.stdout == from_both.stdout
    assert from_file.returncode == from_flags.returncode == from_both.returncode == 0


def test_simulate_input_is_merged_over_context_and_init_has_empty_payload() -> None:
    result = run("simulate", HELLO, "--input", '{"greeted": true, "name": "Ada"}')
    (record,) = steps(result)
    assert record["event"] == {"type": "xstate.init", "payload": {}}
    assert record["context"] == {"greeted": True, "name": "Ada"}


@pytest.mark.parametrize(
    ("value", "message"),
    [("[1, 2]", "--input must be a JSON object"), ("{oops", "--input: invalid JSON at line 1")],
)
def test_simulate_input_must_be_a_json_object(value: str, message: str) -> None:
    result = run("simulate", HELLO, "--input", value)
    assert_clean_failure(result)
    assert result.stdout == ""
    assert message in result.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 3: invalid JSON"),
        ('["WORKFLOW_START"]', "line 3: an event is a JSON object"),
        ('{"payload": {}}', 'line 3: "type" must be a non-empty string'),
        ('{"type": "GO", "payload": [1]}', 'line 3: "payload" must be a JSON object'),
        ('{"type": "GO", "data": {}}', "line 3: unknown key(s) 'data'"),
    ],
)
def test_a_bad_event_line_is_named_and_nothing_runs(
    tmp_path: Path, line: str, message: str
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(f'{{"type": "WORKFLOW_START"}}\n# fine\n{line}\n')
    result = run("simulate", HELLO, "--events", events)
    assert_clean_failure(result)
    assert result.stdout == ""
    assert message in result.stderr


def test_an_unhandled_event_changes_nothing_and_is_not_an_error() -> None:
    result = run("simulate", HELLO, "--event", "HELLO_SENT", "--event", "WORKFLOW_START")
    assert result.returncode == 0, result.stderr
    first, unhandled, started = steps(result)
    assert (unhandled["handled"], unhandled["value"], unhandled["effects"]) == (False, "start", [])
    assert unhandled["context"] == first["context"]
    assert (started["handled"], started["value"]) == (True, "notify")


def test_events_after_done_are_unhandled() -> None:
    result = run("simulate", HELLO, "--events", HELLO_EVENTS, "--event", "WORKFLOW_START")
    assert result.returncode == 0
    last = steps(result)[-1]
    assert (last["status"], last["handled"], last["effects"]) == ("done", False, [])


def test_an_evaluation_error_stops_the_run(tmp_path: Path) -> None:
    spec = base_spec(on={"GO": {"target": "b", "guard": {"expr": "context.missing > 1"}}})
    result = run(
        "simulate", write_json(tmp_path / "spec.json", spec), "--event", "GO", "--event", "GO"
    )
    assert_clean_failure(result)
    records = steps(result)
    assert [r["step"] for r in records] == [0, 1]
    failed = records[-1]
    assert failed["status"] == "error"
    assert failed["error"]
    assert failed["value"] == "a"
    assert "step 1 failed" in result.stderr


def test_simulate_an_invalid_spec_reports_it_like_validate(tmp_path: Path) -> None:
    spec = base_spec(on={"GO": "nowhere"})
    result = run("simulate", write_json(tmp_path / "spec.json", spec), "--event", "GO")
    assert_clean_failure(result)
    assert result.stdout == ""
    assert result.stderr.startswith("states.a.on.GO: target 'nowhere' does not resolve")


def test_simulate_the_order_workflow_to_delivery() -> None:
    result = run("simulate", ORDER, "--events", ORDER_EVENTS, "--input", '{"orderId": "ord-42"}')
    assert result.returncode == 0, result.stderr
    records = steps(result)
    assert records[1]["value"] == {"processing": {"payment": "charging", "fulfilment": "picking"}}
    assert [e["task"]["name"] for e in records[1]["effects"]] == ["charge-card", "pick-items"]
    assert records[1]["effects"][0]["task"]["idempotencyKey"] == "ord-42:charge:1"
    assert records[-1]["status"] == "done"
    assert records[-1]["output"] == {
        "orderId": "ord-42",
        "status": "delivered",
        "trackingNumber": "TRACK-123",
    }


def test_simulate_the_order_workflow_through_retries_timers_and_a_raise() -> None:
    retry_timer = "xstate.after.5000.order-workflow.processing.payment.retrying"
    events = [
        {"type": "ORDER_SUBMITTED", "payload": {"items": [{"sku": "A"}], "total": 10}},
        {"type": "PAYMENT_FAILED"},
        {"type": retry_timer},
        {"type": "PAYMENT_FAILED"},
        {"type": retry_timer},
        {"type": "PAYMENT_FAILED"},
    ]
    stdin = "\n".join(json.dumps(e) for e in events) + "\n"
    result = run("simulate", ORDER, "--events", "-", stdin=stdin)
    assert result.returncode == 0, result.stderr
    records = steps(result)
    assert {"type": "scheduleTimer", "event": retry_timer, "delay": 5000} in records[2]["effects"]
    assert records[3]["context"]["payment"]["attempts"] == 2
    final = records[-1]
    assert final["value"] == "cancelled"
    assert final["status"] == "done"
    assert final["output"] == {
        "orderId": "ord-1",
        "status": "cancelled",
        "reason": "payment declined",
    }


# --- graph --------------------------------------------------------------------


def test_graph_prints_the_mermaid_diagram() -> None:
    result = run("graph", ORDER)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (FIXTURES / "order-workflow.mmd").read_text()


def test_graph_of_hello() -> None:
    result = run("graph", HELLO)
    assert result.stdout.startswith("stateDiagram-v2\n    [*] --> hello_workflow\n")
    assert "    start --> notify : WORKFLOW_START\n" in result.stdout


def test_graph_of_an_invalid_spec_fails_like_validate(tmp_path: Path) -> None:
    result = run("graph", write_json(tmp_path / "spec.json", base_spec(on={"GO": "nowhere"})))
    assert_clean_failure(result)
    assert result.stdout == ""
    assert result.stderr.startswith("states.a.on.GO: target 'nowhere' does not resolve")


def test_validate_applies_the_deploy_limits_with_the_json_path(tmp_path: Path) -> None:
    regions = {f"r{i}": {"initial": "a", "states": {"a": {}}} for i in range(4)}
    spec = {"id": "wide", "type": "parallel", "states": regions}
    path = write_json(tmp_path / "spec.json", spec)
    assert run("validate", path).returncode == 0  # within the default limits
    result = subprocess.run(
        [sys.executable, "-m", "statefleet", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "STATEFLEET_SPEC_MAX_REGIONS": "3"},
    )
    assert_clean_failure(result)
    assert result.stderr.splitlines() == [
        "(root): a parallel state with 4 regions; the limit is 3 (maxRegions)"
    ]

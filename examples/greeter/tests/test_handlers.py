"""The example's handlers, called as statefleet calls them: with a TaskContext."""

from __future__ import annotations

import asyncio
import json
import pathlib
from importlib.metadata import entry_points
from typing import Any

import pytest
from statefleet_greeter import Ledger, greet

from statefleet.engine.handlers import PermanentTaskError, TaskContext


def context(input: Any, key: str = "task-1") -> TaskContext:
    return TaskContext(
        tenant_id="acme",
        instance_id="instance-1",
        task_id=key,
        task_type="GREET",
        name="greet",
        input=input,
        attempt=1,
        max_attempts=3,
        idempotency_key=key,
    )


def test_greet_greets_by_name() -> None:
    assert asyncio.run(greet(context({"name": " Ada "}))) == {"greeting": "Hello, Ada!"}


@pytest.mark.parametrize("input", [{}, {"name": ""}, {"name": 7}, "Ada"])
def test_greet_without_a_name_fails_for_good(input: Any) -> None:
    with pytest.raises(PermanentTaskError, match="non-empty string `name`"):
        asyncio.run(greet(context(input)))


def test_the_ledger_writes_each_key_once_and_closes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "ledger.jsonl"

    async def run() -> list[dict[str, Any]]:
        ledger = Ledger({"GREETER_LEDGER": str(path)})
        first = await ledger(context({"greeting": "Hello, Ada!"}, key="k1"))
        again = await ledger(context({"greeting": "Hello, Ada!"}, key="k1"))
        await ledger.aclose()
        # A new executor (a restarted pool) still knows the keys already written.
        reopened = Ledger({"GREETER_LEDGER": str(path)})
        later = await reopened(context({"greeting": "Hello, Ada!"}, key="k1"))
        await reopened.aclose()
        return [first, again, later]

    assert [r["recorded"] for r in asyncio.run(run())] == [True, False, False]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"key": "k1", "instance": "instance-1", "input": {"greeting": "Hello, Ada!"}}]


def test_the_ledger_without_its_setting_fails_its_tasks_for_good() -> None:
    with pytest.raises(PermanentTaskError, match="GREETER_LEDGER is not set"):
        asyncio.run(Ledger({})(context({})))


def test_the_package_declares_its_handlers_as_entry_points() -> None:
    points = {p.name: p.value for p in entry_points(group="statefleet.handlers")}
    assert points["GREET"] == "statefleet_greeter.handlers:greet"
    assert points["LEDGER"] == "statefleet_greeter.handlers:Ledger"


def test_the_workflow_is_valid() -> None:
    from statefleet.engine.spec import validate_spec

    spec = pathlib.Path(__file__).parents[1] / "statefleet_greeter" / "greeter-workflow.json"
    validate_spec(json.loads(spec.read_text()))

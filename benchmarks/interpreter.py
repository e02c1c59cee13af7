"""Interpreter throughput: transitions per second on one core, no I/O.

Two machines: the seed's hello workflow (start -> createTask -> done) and an
order workflow with a parallel state, nested compound states, CEL guards
(named, with params, ``and``/``not``), ``assignments``, ``after`` timers and
``#id`` targets. The machine is compiled once, as the runtime does; each
measured step is a full ``Machine.transition`` (or ``initial_state``) call,
including snapshot decoding and effect resolution.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

from benchmarks import machine_info, results_io
from statefleet.engine.interpreter import Machine, Snapshot, load_machine

ROOT = pathlib.Path(__file__).resolve().parent.parent
HELLO = ROOT / "tests" / "fixtures" / "hello-workflow.json"
ORDER = pathlib.Path(__file__).parent / "specs" / "order.json"

ORDER_CYCLE: list[dict[str, Any]] = [
    {"type": "ADD", "payload": {"price": 60.0}},
    {"type": "PING", "payload": {}},
    {"type": "ADD", "payload": {"price": 60.0}},
    {"type": "CHECKOUT", "payload": {}},
    {"type": "APPROVE", "payload": {}},
    {"type": "SHIPPED", "payload": {}},
]


def _timed(body: Callable[[], int], seconds: float) -> tuple[int, float]:
    """Runs ``body`` (which returns steps done) until ``seconds`` have passed."""
    body()  # warm caches (CEL programs, candidate memo)
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        steps += body()
    return steps, time.perf_counter() - start


def hello_workflows(machine: Machine, batch: int = 200) -> Callable[[], int]:
    start_event = {"type": "WORKFLOW_START", "payload": {}}
    sent_event = {"type": "HELLO_SENT", "payload": {}}

    def body() -> int:
        for _ in range(batch):
            step = machine.initial_state()
            step = machine.transition(step.snapshot, start_event)
            step = machine.transition(step.snapshot, sent_event)
            if step.status != "done":
                raise RuntimeError("hello workflow did not finish")
        return batch * 3

    return body


def hello_transitions(machine: Machine, batch: int = 300) -> Callable[[], int]:
    """Only the two event transitions, from a snapshot restored as the runtime would."""
    start = Snapshot.from_dict(machine.initial_state().snapshot.as_dict())
    start_event = {"type": "WORKFLOW_START", "payload": {}}
    sent_event = {"type": "HELLO_SENT", "payload": {}}

    def body() -> int:
        for _ in range(batch):
            step = machine.transition(start, start_event)
            machine.transition(step.snapshot, sent_event)
        return batch * 2

    return body


def order_transitions(machine: Machine, cycles: int = 50) -> Callable[[], int]:
    snapshot = machine.initial_state().snapshot

    def body() -> int:
        nonlocal snapshot
        for _ in range(cycles):
            for event in ORDER_CYCLE:
                step = machine.transition(snapshot, event)
                if step.status != "active" or not step.handled:
                    raise RuntimeError(f"order workflow stuck at {step.snapshot.value}")
                snapshot = step.snapshot
        return cycles * len(ORDER_CYCLE)

    return body


def main(seconds: float = 3.0, write_results: bool = True) -> dict[str, Any]:
    info = machine_info.describe()
    hello = load_machine(json.loads(HELLO.read_text()))
    order = load_machine(json.loads(ORDER.read_text()))
    scenarios = {
        "hello: workflows (initial + 2 events)": (hello_workflows(hello), 3),
        "hello: event transitions": (hello_transitions(hello), 1),
        "order (parallel, nested, CEL guards)": (order_transitions(order), 1),
    }
    rows = []
    for name, (body, steps_per_unit) in scenarios.items():
        steps, elapsed = _timed(body, seconds)
        rate = steps / elapsed
        rows.append(
            {
                "scenario": name,
                "steps": steps,
                "seconds": round(elapsed, 3),
                "steps_per_s": round(rate),
                "us_per_step": round(1e6 / rate, 2),
                "units_per_s": round(rate / steps_per_unit),
            }
        )
    print(machine_info.banner(info))
    print("one process, one core, no I/O")
    print(f"{'scenario':<42} {'steps/s':>10} {'us/step':>9} {'workflows/s':>12}")
    for row in rows:
        units = f"{row['units_per_s']:>12,}" if "workflows" in str(row["scenario"]) else f"{'':>12}"
        print(f"{row['scenario']:<42} {row['steps_per_s']:>10,} {row['us_per_step']:>9} {units}")
    result = {"benchmark": "interpreter", "machine": info, "seconds": seconds, "rows": rows}
    if write_results:
        path = results_io.write("interpreter", result)
        print(f"wrote {path.relative_to(ROOT)}")
    return result

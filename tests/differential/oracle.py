"""Run one case on both sides, compare the steps, and shrink a mismatch.

The XState side is ``xstate_runner.mjs`` (one Node process per batch); the
statefleet side is :func:`run_statefleet`, which restores every step from the
persisted JSON snapshot exactly as the runtime does. Both produce, per step,
``{"value", "context", "status", "output"?, "error"?, "effects", "handled"}``
with step 0 the initial state.

A mismatch is reported with a *minimal* reproduction: :func:`shrink` deletes
events and spec parts one at a time (coarse parts first) while the two sides
still disagree in the same way, so the message shows the few lines that matter
rather than a generated spec of a hundred.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from translate import translate

__all__ = [
    "HERE",
    "Mismatch",
    "Outcome",
    "XStateRunner",
    "compare",
    "describe_failure",
    "ensure_installed",
    "find_mismatch",
    "find_node",
    "format_repro",
    "run_statefleet",
    "shrink",
    "strict_equal",
]

HERE: Final = Path(__file__).resolve().parent
RUNNER: Final = HERE / "xstate_runner.mjs"
COMPARED: Final = ("status", "value", "context", "output", "effects", "handled")


class XStateRunner:
    """The Node oracle: sends a batch of cases, returns one result per case."""

    def __init__(self, node: str, directory: Path = HERE, timeout: float = 120.0) -> None:
        self.node = node
        self.directory = directory
        self.timeout = timeout
        self.version: str | None = None

    def run(self, cases: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Runs ``cases`` (from :meth:`Translation.as_case`) in one Node process.

        Raises:
            RuntimeError: the runner crashed or printed something that is not its answer.
        """
        payload = json.dumps({"cases": list(cases)})
        proc = subprocess.run(
            [self.node, str(RUNNER)],
            input=payload,
            capture_output=True,
            text=True,
            cwd=self.directory,
            timeout=self.timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"xstate_runner.mjs failed ({proc.returncode}):\n{proc.stderr}")
        answer = json.loads(proc.stdout)
        self.version = answer["xstate"]
        results: list[dict[str, Any]] = answer["results"]
        if len(results) != len(cases):
            raise RuntimeError(f"runner answered {len(results)} of {len(cases)} cases")
        return results


def find_node() -> tuple[str, str] | None:
    """Paths of ``node`` and ``npm``, or None when either is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    return (node, npm) if node and npm else None


def ensure_installed(npm: str, directory: Path = HERE) -> None:
    """Runs ``npm ci`` when ``node_modules`` is missing (pinned by package-lock.json)."""
    if (directory / "node_modules" / "xstate" / "package.json").exists():
        return
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        check=True,
        timeout=300,
        env={**os.environ, "npm_config_update_notifier": "false"},
    )


# --- the statefleet side --------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What statefleet did with a case: its steps, or why it could not run it."""

    steps: list[dict[str, Any]]
    failure: str | None = None  # "load: ..." or "crash at step i: ..."


def _step_dict(step: Any) -> dict[str, Any]:
    data: dict[str, Any] = dict(step.snapshot.as_dict())
    data["effects"] = step.effects_as_dicts()
    data["handled"] = step.handled
    return orjson.loads(orjson.dumps(data))  # type: ignore[no-any-return]


def run_statefleet(
    spec: Mapping[str, Any],
    instance_input: Mapping[str, Any] | None,
    events: Sequence[Mapping[str, Any]],
) -> Outcome:
    """Runs a case on statefleet's interpreter, restoring each step from JSON."""
    from statefleet.engine.interpreter import Snapshot, load_machine

    try:
        machine = load_machine(json.loads(json.dumps(spec)))
    except Exception as exc:
        return Outcome([], f"load: {type(exc).__name__}: {exc}")
    steps: list[dict[str, Any]] = []
    try:
        step = machine.initial_state(instance_input)
        steps.append(_step_dict(step))
        for event in events:
            if steps[-1]["status"] == "error":
                break
            persisted = orjson.loads(orjson.dumps(step.snapshot.as_dict()))
            step = machine.transition(Snapshot.from_dict(persisted), dict(event))
            steps.append(_step_dict(step))
    except Exception:
        return Outcome(steps, f"crash at step {len(steps)}:\n{traceback.format_exc(limit=6)}")
    return Outcome(steps)


# --- comparison -------------------------------------------------------------------


def strict_equal(a: Any, b: Any) -> bool:
    """JSON equality that tells ``true`` from ``1`` and ``2`` from ``2.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@dataclass(frozen=True)
class Mismatch:
    """The first disagreement: a step index and field, or a statefleet failure."""

    kind: str  # "load", "crash", "length", or the compared field
    step: int
    ours: Any
    xstate: Any

    def describe(self) -> str:
        if self.kind in ("load", "crash"):
            return f"statefleet {self.kind} failure (XState ran the case):\n{self.ours}"
        return (
            f"step {self.step}, {self.kind}:\n"
            f"  statefleet: {json.dumps(self.ours, sort_keys=True)}\n"
            f"  xstate:     {json.dumps(self.xstate, sort_keys=True)}"
        )


def compare(ours: Outcome, xstate_steps: Sequence[Mapping[str, Any]]) -> Mismatch | None:
    """The first field of the first step where the two sides differ, if any."""
    if ours.failure is not None:
        kind = "load" if ours.failure.startswith("load") else "crash"
        return Mismatch(kind, len(ours.steps), ours.failure, None)
    for index, (mine, theirs) in enumerate(zip(ours.steps, xstate_steps, strict=False)):
        if mine["status"] == "error" and theirs["status"] == "error":
            return None  # both stop here; messages are implementation-specific
        for key in COMPARED:
            if key == "output" and theirs["status"] != "done":
                continue
            if not strict_equal(mine.get(key), theirs.get(key)):
                return Mismatch(key, index, mine.get(key), theirs.get(key))
    if len(ours.steps) != len(xstate_steps):
        return Mismatch("length", min(len(ours.steps), len(xstate_steps)), ours.steps, xstate_steps)
    return None


def find_mismatch(
    runner: XStateRunner,
    spec: Mapping[str, Any],
    instance_input: Mapping[str, Any] | None,
    events: Sequence[Mapping[str, Any]],
) -> tuple[Mismatch | None, list[dict[str, Any]], dict[str, Any]]:
    """Runs one case on both sides: (mismatch, concrete events, XState result)."""
    concrete = [dict(event) for event in events]
    result = runner.run([translate(spec, instance_input).as_case("case", concrete)])[0]
    if result.get("error"):
        raise RuntimeError(f"XState rejected the case: {result['error']}")
    ours = run_statefleet(spec, instance_input, result["events"])
    return compare(ours, result["steps"]), result["events"], result


# --- shrinking --------------------------------------------------------------------


def _removals(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """(size, path) of every dict entry and list element that could be deleted."""
    if isinstance(node, dict):
        for key, child in node.items():
            if path == () and key in ("id", "context"):
                continue  # the machine id and the typed context stay
            if key == "$expr":
                continue
            yield len(json.dumps(child)), (*path, key)
            yield from _removals(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield len(json.dumps(child)), (*path, index)
            yield from _removals(child, (*path, index))


def _without(node: Any, path: tuple[Any, ...]) -> Any:
    copy = json.loads(json.dumps(node))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return copy


def _candidates(spec: dict[str, Any], events: list[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    for index in reversed(range(len(events))):
        yield spec, [e for i, e in enumerate(events) if i != index]
    for _, path in sorted(_removals(spec), key=lambda item: -item[0]):
        yield _without(spec, path), events


def shrink(
    runner: XStateRunner,
    spec: dict[str, Any],
    instance_input: dict[str, Any] | None,
    events: list[dict[str, Any]],
    mismatch: Mismatch,
    budget_s: float = 20.0,
    batch: int = 200,
) -> tuple[dict[str, Any], list[dict[str, Any]], Mismatch]:
    """Greedy one-deletion-at-a-time shrinking while the same kind of mismatch remains.

    ``events`` must be concrete (timer placeholders already resolved). A
    candidate counts only if XState still accepts and runs it without error
    and statefleet still loads it (unless loading was the original failure).
    """
    deadline = time.monotonic() + budget_s
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        pending = list(_candidates(spec, events))
        for start in range(0, len(pending), batch):
            chunk = pending[start : start + batch]
            cases: list[dict[str, Any]] = []
            kept: list[tuple[Any, ...]] = []
            for cand_spec, cand_events in chunk:
                try:
                    translation = translate(cand_spec, instance_input)
                except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                    continue
                kept.append((cand_spec, cand_events))
                cases.append(translation.as_case(str(len(cases)), cand_events))
            if not cases:
                continue
            results = runner.run(cases)
            found = _first_failing(kept, results, instance_input, mismatch)
            if found is not None:
                spec, events, mismatch = found
                improved = True
                break
            if time.monotonic() >= deadline:
                break
    return spec, events, mismatch


def _first_failing(
    kept: list[tuple[Any, ...]],
    results: list[dict[str, Any]],
    instance_input: dict[str, Any] | None,
    original: Mismatch,
) -> tuple[dict[str, Any], list[dict[str, Any]], Mismatch] | None:
    for (cand_spec, _), result in zip(kept, results, strict=True):
        xstate_failed = result.get("error") or any(s["status"] == "error" for s in result["steps"])
        if xstate_failed and original.kind != "status":
            continue  # a candidate XState cannot run is not a smaller reproduction
        ours = run_statefleet(cand_spec, instance_input, result["events"])
        found = compare(ours, result["steps"])
        if found is not None and found.kind == original.kind:
            return cand_spec, result["events"], found
    return None


def format_repro(
    spec: Mapping[str, Any],
    instance_input: Mapping[str, Any] | None,
    events: Sequence[Mapping[str, Any]],
    mismatch: Mismatch,
    header: str = "",
) -> str:
    """A self-contained reproduction to paste into a conformance case."""
    lines = [header] if header else []
    lines += [
        mismatch.describe(),
        "spec:",
        json.dumps(spec, indent=1),
        f"input: {json.dumps(instance_input)}",
        f"events: {json.dumps(list(events))}",
    ]
    return "\n".join(lines)


def describe_failure(
    runner: XStateRunner,
    spec: dict[str, Any],
    instance_input: dict[str, Any] | None,
    events: list[dict[str, Any]],
    mismatch: Mismatch,
    header: str,
    shrink_budget_s: float = 20.0,
) -> str:
    """Shrinks a mismatch (best effort) and formats the reproduction."""
    try:
        spec, events, mismatch = shrink(
            runner, spec, instance_input, events, mismatch, budget_s=shrink_budget_s
        )
        header += " (shrunk)"
    except Exception as exc:  # a broken shrink must not hide the original mismatch
        header += f" (not shrunk: {exc})"
    return format_repro(spec, instance_input, events, mismatch, header)

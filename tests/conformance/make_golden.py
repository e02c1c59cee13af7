"""Regenerate (or check) the expected steps of the conformance cases from XState.

Every case in ``cases/`` whose ``source`` is ``"xstate"`` gets its ``expected``
from the XState oracle in ``tests/differential`` (translated spec, one batch,
one Node process); the pinned XState version is recorded in the file. Cases
marked ``"source": "hand"`` cover rows XState cannot express (CEL int/double,
evaluation errors, the eventless-loop error) and are left alone.

Usage (from the repository root; needs Node and ``npm ci --prefix tests/differential``)::

    .venv/bin/python tests/conformance/make_golden.py          # rewrite expected
    .venv/bin/python tests/conformance/make_golden.py --check  # exit 1 on drift

A regenerated golden is not trusted blindly: review the diff by hand against
the contract row the case names before committing it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
DIFFERENTIAL = HERE.parent / "differential"
KEY_ORDER = ("name", "contract", "source", "xstate", "spec", "input", "js", "events", "expected")

sys.path.insert(0, str(DIFFERENTIAL))

from oracle import XStateRunner, ensure_installed, find_node  # noqa: E402
from translate import translate  # noqa: E402


def load_cases() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, json.loads(path.read_text())) for path in sorted(CASES.glob("*.json"))]


def golden_steps(runner: XStateRunner, cases: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """XState's steps for each case (all in one Node process)."""
    batch = [
        translate(case["spec"], case.get("input"), case.get("js")).as_case(
            case["name"], case["events"]
        )
        for case in cases
    ]
    results = runner.run(batch)
    out = []
    for case, result in zip(cases, results, strict=True):
        if result.get("error"):
            raise RuntimeError(f"{case['name']}: XState rejected the case: {result['error']}")
        if result["events"] != case["events"]:
            raise RuntimeError(f"{case['name']}: events must be concrete (no timer placeholders)")
        out.append(result["steps"])
    return out


def dump(case: dict[str, Any]) -> str:
    ordered = {key: case[key] for key in KEY_ORDER if key in case}
    ordered.update({k: v for k, v in case.items() if k not in ordered})
    return json.dumps(ordered, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift, write nothing")
    args = parser.parse_args(argv)
    tools = find_node()
    if tools is None:
        print("node and npm are required", file=sys.stderr)
        return 2
    node, npm = tools
    ensure_installed(npm, DIFFERENTIAL)
    runner = XStateRunner(node, DIFFERENTIAL)
    loaded = [(p, c) for p, c in load_cases() if c.get("source", "xstate") == "xstate"]
    steps = golden_steps(runner, [c for _, c in loaded])
    drift = []
    for (path, case), expected in zip(loaded, steps, strict=True):
        if case.get("expected") == expected and case.get("xstate") == runner.version:
            continue
        drift.append(path.name)
        if not args.check:
            case["expected"] = expected
            case["xstate"] = runner.version
            path.write_text(dump(case))
    verb = "differ from" if args.check else "rewritten from"
    print(f"{len(drift)} of {len(loaded)} cases {verb} XState {runner.version}: {drift}")
    return 1 if args.check and drift else 0


if __name__ == "__main__":
    raise SystemExit(main())

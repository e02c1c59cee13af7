"""Ratios between two result files: ``python -m benchmarks compare A.json B.json``.

Every numeric figure present in both files is shown with B / A. Figures are the
``figures`` object of a result, or, for the interpreter's rows, ``<scenario>: <field>``.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

from benchmarks import results_io


def figures(result: dict[str, Any]) -> dict[str, float]:
    found: dict[str, float] = {}
    for name, value in (result.get("figures") or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = float(value)
    for row in result.get("rows") or []:
        label = row.get("scenario", "row")
        for name, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[f"{label}: {name}"] = float(value)
    return found


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    first, second = figures(a), figures(b)
    rows = []
    for name in first:
        if name not in second:
            continue
        x, y = first[name], second[name]
        ratio = y / x if x else math.nan
        rows.append({"figure": name, "a": x, "b": y, "ratio": ratio})
    return rows


def main(a_path: pathlib.Path, b_path: pathlib.Path) -> list[dict[str, Any]]:
    a, b = results_io.read(a_path), results_io.read(b_path)
    rows = compare(a, b)
    print(f"A = {a_path} ({a.get('benchmark')})")
    print(f"B = {b_path} ({b.get('benchmark')})")
    width = max([len(r["figure"]) for r in rows] + [6])
    print(f"{'figure':<{width}} {'A':>14} {'B':>14} {'B / A':>8}")
    for row in rows:
        print(
            f"{row['figure']:<{width}} {row['a']:>14,.2f} {row['b']:>14,.2f} {row['ratio']:>8.3f}"
        )
    if not rows:
        print("no figures in common")
    return rows

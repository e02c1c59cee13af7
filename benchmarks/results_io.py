"""Writes benchmark results as JSON under ``benchmarks/results/`` (or another directory)."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import orjson

RESULTS = pathlib.Path(__file__).parent / "results"


def write(
    name: str, payload: dict[str, Any], directory: pathlib.Path | None = None
) -> pathlib.Path:
    target = directory or RESULTS
    target.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = target / f"{name}-{stamp}.json"
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    return path


def read(path: pathlib.Path) -> dict[str, Any]:
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a results object")
    return data


def shown(path: pathlib.Path) -> str:
    """``path`` relative to the working directory when it is under it."""
    try:
        return str(path.resolve().relative_to(pathlib.Path.cwd()))
    except ValueError:
        return str(path)

"""Writes benchmark results as JSON under ``benchmarks/results/``."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import orjson

RESULTS = pathlib.Path(__file__).parent / "results"


def write(name: str, payload: dict[str, Any]) -> pathlib.Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    return path

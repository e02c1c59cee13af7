"""What a benchmark ran on, printed and stored with every result."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in ("statefleet", "cel-expr-python", "pydantic", "orjson", "asyncpg"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": versions,
    }


def banner(info: dict[str, Any]) -> str:
    return (
        f"machine: {info['cpu']} ({info['cores']} cores), "
        f"{info['implementation']} {info['python']}, {info['platform']}"
    )

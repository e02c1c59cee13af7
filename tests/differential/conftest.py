"""Fixtures of the differential suite: the XState oracle, installed on demand.

The oracle needs Node and the pinned ``xstate`` from package-lock.json. When
``node_modules`` is missing the session runs ``npm ci`` once. Without Node or
npm the suite skips on a developer machine but fails under ``CI=true``: CI
must never pass by silently comparing nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # translate/specgen/oracle are plain modules beside this file
    sys.path.insert(0, str(HERE))

from oracle import XStateRunner, ensure_installed, find_node  # noqa: E402


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"XState oracle unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"XState oracle unavailable: {reason}")


@pytest.fixture(scope="session")
def xstate_runner() -> XStateRunner:
    """The XState oracle, with ``npm ci`` run first if needed."""
    tools = find_node()
    if tools is None:
        _unavailable("node and npm are not on PATH")
        raise AssertionError("unreachable")
    node, npm = tools
    try:
        ensure_installed(npm, HERE)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        _unavailable(f"npm ci failed: {exc}")
    return XStateRunner(node, HERE)

"""Fixtures of the differential suite: the XState oracle, installed on demand.

The oracle needs Node and the pinned ``xstate`` from package-lock.json. When
``node_modules`` is missing the session runs ``npm ci`` once. Without Node or
npm the suite skips on a developer machine but fails under ``CI=true``: CI
must never pass by silently comparing nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.required import unavailable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # translate/specgen/oracle are plain modules beside this file
    sys.path.insert(0, str(HERE))

from oracle import XStateRunner, ensure_installed, find_node  # noqa: E402


@pytest.fixture(scope="session")
def xstate_runner() -> XStateRunner:
    """The XState oracle, with ``npm ci`` run first if needed."""
    tools = find_node()
    if tools is None:
        unavailable("XState oracle", "node and npm are not on PATH")
        raise AssertionError("unreachable")
    node, npm = tools
    try:
        ensure_installed(npm, HERE)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        unavailable("XState oracle", f"npm ci failed: {exc}")
    return XStateRunner(node, HERE)

"""The one guard for tests that need something a machine may lack.

Postgres, Redis, Node, the Cloud Tasks emulator, helm, a browser: on a developer's
machine without one of them, the tests that need it skip with the reason. Under
``CI=true`` they fail instead, so a CI run can never go green by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["in_ci", "unavailable"]


def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(what: str, reason: str) -> NoReturn:
    """Skips the test because ``what`` is missing, or fails it under ``CI=true``."""
    if in_ci():
        pytest.fail(f"{what} is required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")

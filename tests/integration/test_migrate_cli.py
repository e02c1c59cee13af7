"""``statefleet migrate`` as an operator runs it: twice, against a real server."""

from __future__ import annotations

import os
import subprocess
import sys


def run_migrate(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statefleet", "migrate"],
        env={**os.environ, "DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_applies_once_then_reports_up_to_date(empty_database_dsn: str) -> None:
    first = run_migrate(empty_database_dsn)
    second = run_migrate(empty_database_dsn)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied 0001")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "schema is up to date"


def test_migrate_without_a_database_url_says_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "statefleet", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--database-url" in result.stderr

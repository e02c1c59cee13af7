"""The one "skip, or fail under CI=true" guard, and that no test keeps a guard of its own."""

from __future__ import annotations

import pathlib

import pytest

from tests.required import unavailable

TESTS = pathlib.Path(__file__).resolve().parents[1]


def test_a_missing_tool_skips_on_a_developer_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Redis unavailable: no redis-server"):
        unavailable("Redis", "no redis-server")


@pytest.mark.parametrize("value", ["true", "TRUE", " true "])
def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="Redis is required under CI=true"):
        unavailable("Redis", "no redis-server")


def test_no_test_reads_ci_or_skips_by_itself() -> None:
    """Every skip goes through ``unavailable``, so none can go green under CI by skipping."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if "node_modules" in path.parts or path.name in ("required.py", "test_required.py"):
            continue
        text = path.read_text()
        for needle in ('environ.get("CI"', "pytest.skip(", "mark.skipif", "importorskip"):
            if needle in text:
                offenders.append(f"{path.relative_to(TESTS)}: {needle}")
    assert offenders == []

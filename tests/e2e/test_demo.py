"""``statefleet demo`` as a user runs it: a real subprocess, start to clean exit."""

from __future__ import annotations

import pathlib
import subprocess

import pytest
from embedded_support import TreeWatcher, clean_env, spawn

from statefleet.examples import HELLO_WORKFLOW

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hello-workflow.json"


def test_packaged_hello_workflow_is_the_fixture() -> None:
    import json

    assert json.loads(FIXTURE.read_text()) == HELLO_WORKFLOW


@pytest.mark.timeout(400)
def test_demo_runs_a_batch_prints_throughput_and_audit_and_leaves_nothing(
    tmp_path: pathlib.Path,
) -> None:
    log = tmp_path / "demo.out"
    process = spawn(["demo", "--instances", "200"], clean_env(COLUMNS="200"), log)
    watcher = TreeWatcher(process.pid)
    try:
        code = process.wait(timeout=360)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    finally:
        watcher.stop()
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert "throughput:" in output
    assert "completions/s" in output
    assert "200 done" in output
    assert "smtp sink received 200 message(s)" in output
    for row in ("xstate.init", "WORKFLOW_START", "start -> notify", "notify -> done"):
        assert row in output, output
    assert "createTask EMAIL send-hello" in output
    assert watcher.seen, "no child processes were observed (no postgres, no ray?)"
    assert watcher.survivors() == []

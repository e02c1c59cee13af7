"""The web console in a real headless Chromium against a real ``statefleet up``.

Sign in (a bad key shows the API's error), see the list update live, the inbox, an
instance's diagram with its active state highlighted, complete its HUMAN task and
watch it move on, send an event, cancel, and check that another tenant's key sees
none of it and the admin key reads only the dead letters; the browser reports no
Content-Security-Policy violation throughout (Mermaid included).

Without Chromium the module skips on a developer machine and fails under ``CI=true``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from console_support import Stack, Unavailable, browser, running_up, walk_through
from selenium.webdriver.remote.webdriver import WebDriver

from tests.required import unavailable


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    try:
        with browser() as found:
            yield found
    except Unavailable as exc:
        unavailable("the console's browser", str(exc))


@pytest.fixture
def stack(tmp_path: pathlib.Path) -> Iterator[Stack]:
    with running_up(tmp_path) as running:
        yield running


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_person_works_through_the_console(
    driver: WebDriver, stack: Stack, tmp_path: pathlib.Path
) -> None:
    seen = walk_through(driver, stack, shots=tmp_path / "shots")

    assert seen.login_error == "401 unauthorized: unknown or revoked API key"
    assert len(seen.listed) >= 4
    assert seen.live_row
    assert len(seen.filtered) == 1
    assert len(seen.inbox) >= 5
    assert seen.active_before == ["waiting"]
    assert seen.active_attribute == "review.waiting"
    assert seen.active_after == ["approved"]
    assert seen.history_types[:3] == ["xstate.init", "WORKFLOW_START", "APPROVED"]
    assert seen.task_status_after == "succeeded"
    assert seen.actions_after == [False]  # no send or cancel for a finished instance
    assert seen.sent_status == "done"
    assert seen.cancelled_status == "cancelled"
    assert seen.ai_decision.splitlines() == [
        "AI decision: REFUND at confidence 0.91: rejected",
        "why: event 'REFUND' is not in allowedEvents (allowed: APPROVE)",
        "model's reason: charged twice",
        "openai gpt-4o-mini",
    ]
    assert seen.form_closed
    assert seen.batch_bar == ("0", "3")  # none of its 3 instances finished
    assert (seen.failed_status, seen.retried_status) == ("failed", "running")
    assert "not enough evidence" in seen.failed_error
    assert seen.other_listed == []
    assert seen.other_inbox == []
    assert seen.other_direct.startswith("404 unknown_instance")
    assert seen.admin_heading == "Dead letters"
    assert seen.console_errors == []
    shots = sorted(p.name for p in (tmp_path / "shots").iterdir())
    assert shots == [
        "batches.png",
        "definition.png",
        "inbox.png",
        "instance-done.png",
        "instance.png",
        "instances.png",
        "sign-in.png",
    ]
    assert all((tmp_path / "shots" / name).read_bytes().startswith(b"\x89PNG") for name in shots)

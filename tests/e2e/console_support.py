"""The web console driven by a real browser against a real ``statefleet up``.

Debian's ``chromium`` runs headless under Selenium through Debian's ``chromidriver``
(``.ci/run`` installs both); ``statefleet up`` runs as a subprocess with its embedded
Postgres, local Ray and the API, and an admin key so a second tenant can be created
through the public admin route. ``walk_through`` is the whole visit a person makes;
the test runs it, and ``console_screenshots.py`` runs it again to write the
screenshots of docs/console.md.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from embedded_support import TreeWatcher, clean_env, spawn, state_home, wait_for_line
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from statefleet.embedded import free_port

T = TypeVar("T")
ADMIN_KEY = "console-admin-key-0123456789"
WAIT_S = 60

#: A workflow that waits for a person: its HUMAN task's completion moves it on.
APPROVAL: dict[str, Any] = {
    "id": "approval",
    "initial": "review",
    "context": {"amount": 120},
    "states": {
        "review": {
            "initial": "waiting",
            "states": {
                "waiting": {
                    "entry": [
                        {
                            "type": "createTask",
                            "task": {
                                "type": "HUMAN",
                                "name": "approve-refund",
                                "input": {"question": "Refund 120 EUR?"},
                                "completionEvent": "APPROVED",
                            },
                        }
                    ],
                    "on": {"APPROVED": "#approval.approved"},
                }
            },
            "on": {"REJECTED": "rejected"},
        },
        "approved": {"type": "final"},
        "rejected": {"type": "final"},
    },
}


#: An AI task's output as its completion event carries it (docs/ai.md), sent by hand.
AI_OUTPUT = (
    '{"decision": {"event": "REFUND", "payload": {"amount": 5000}, "reason": "charged twice",'
    ' "confidence": 0.91}, "emitted": false, "rejected": true,'
    ' "rejectionReason": "event \'REFUND\' is not in allowedEvents (allowed: APPROVE)",'
    ' "provider": "openai", "model": "gpt-4o-mini"}'
)


class Unavailable(RuntimeError):
    """Chromium or its driver is missing (the caller fails under CI, skips otherwise)."""


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (name if os.path.exists(name) else None)
        if found:
            return found
    raise Unavailable(f"none of {names} is installed (apt-get install chromium chromium-driver)")


@contextmanager
def browser() -> Iterator[WebDriver]:
    """Headless Chromium; the binaries are given so Selenium downloads nothing."""
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "/usr/bin/chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1360,1000",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=_binary("chromedriver", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Stack:
    url: str
    tenant_key: str
    other_key: str
    log: pathlib.Path


@contextmanager
def running_up(workdir: pathlib.Path) -> Iterator[Stack]:
    """``statefleet up`` on a free port, plus a second tenant made through /v1/admin."""
    with state_home() as home:
        port = free_port()
        log = workdir / "up.out"
        env = clean_env(STATEFLEET_HOME=str(home), STATEFLEET_ADMIN_KEY=ADMIN_KEY)
        process = spawn(["up", "--port", str(port)], env, log)
        watcher = TreeWatcher(process.pid)
        try:
            url = wait_for_line(log, "export STATEFLEET_URL=", process).split("=", 1)[1].strip()
            key = wait_for_line(log, "export STATEFLEET_API_KEY=", process).split("=", 1)[1]
            admin = httpx.post(
                f"{url}/v1/admin/tenants",
                json={"name": "globex"},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                timeout=30,
            )
            admin.raise_for_status()
            yield Stack(url, key.strip(), admin.json()["apiKey"], log)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
            watcher.stop()


# -- waiting on the page ---------------------------------------------------------------


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T | bool | None], what: str) -> T:
    """Polls ``condition`` until it returns something truthy; the message says what."""

    def check(d: WebDriver) -> Any:
        try:
            return condition(d)
        except (StaleElementReferenceException, WebDriverException):
            return False  # the view re-rendered under us: ask again

    result: T = WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(check, what)
    return result


def by_testid(driver: WebDriver | WebElement, testid: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def one(driver: WebDriver, testid: str) -> WebElement:
    return wait_for(driver, lambda d: next(iter(by_testid(d, testid)), None), testid)


def rows(driver: WebDriver, testid: str, attribute: str) -> list[str]:
    return [row.get_attribute(attribute) or "" for row in by_testid(driver, testid)]


def sign_in(driver: WebDriver, stack: Stack, key: str) -> None:
    driver.get(f"{stack.url}/ui/")
    field = one(driver, "login-key")
    field.clear()
    field.send_keys(key)
    one(driver, "login-submit").click()


def sign_out(driver: WebDriver) -> None:
    one(driver, "logout").click()
    one(driver, "login-key")


def active_states(driver: WebDriver) -> list[str]:
    """The labels of the diagram's highlighted states (Mermaid's class ``active``)."""
    diagram = one(driver, "state-diagram")
    return sorted(n.text.strip() for n in diagram.find_elements(By.CSS_SELECTOR, "svg g.active"))


def csp_violations(driver: WebDriver) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]


# -- the visit -------------------------------------------------------------------------


@dataclass
class Seen:
    """What the visit saw, for the test's assertions."""

    login_error: str = ""
    listed: list[str] = field(default_factory=list)
    live_row: bool = False
    inbox: list[str] = field(default_factory=list)
    active_before: list[str] = field(default_factory=list)
    active_after: list[str] = field(default_factory=list)
    active_attribute: str | None = None
    history_types: list[str] = field(default_factory=list)
    task_status_after: str = ""
    sent_status: str = ""
    cancelled_status: str = ""
    filtered: list[str] = field(default_factory=list)
    ai_decision: str = ""
    actions_after: list[bool] = field(default_factory=list)
    form_closed: bool = False
    batch_bar: tuple[str, str] = ("", "")
    failed_status: str = ""
    failed_error: str = ""
    retried_status: str = ""
    other_listed: list[str] = field(default_factory=list)
    other_inbox: list[str] = field(default_factory=list)
    other_direct: str = ""
    admin_heading: str = ""
    console_errors: list[str] = field(default_factory=list)


def _api(stack: Stack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _status(driver: WebDriver, wanted: str) -> str:
    return wait_for(
        driver,
        lambda d: (el := one(d, "instance-status")).text == wanted and el.text,
        f"instance status {wanted}",
    )


def walk_through(driver: WebDriver, stack: Stack, shots: pathlib.Path | None = None) -> Seen:
    """Everything a person does in the console, as the tests check it; with ``shots``,
    a screenshot of each main page is written there."""
    seen = Seen()

    def shot(name: str) -> None:
        """The whole page: the window grows to the page's height for the picture."""
        if shots is None:
            return
        shots.mkdir(parents=True, exist_ok=True)
        size = driver.get_window_size()
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(size["width"], min(int(height) + 140, 2400))
        try:
            driver.save_screenshot(str(shots / f"{name}.png"))
        finally:
            driver.set_window_size(size["width"], size["height"])

    with _api(stack, stack.tenant_key) as api:
        assert api.post("/v1/definitions", json={"spec": APPROVAL}).status_code in (200, 201)
        started = [
            api.post("/v1/instances", json={"definitionKey": "approval"}).json()["id"]
            for _ in range(4)
        ]
        waiting, to_send, to_cancel, to_fail = started

        def task_of(instance_id: str) -> str:
            return str(api.get(f"/v1/instances/{instance_id}/tasks").json()["items"][0]["id"])

        # A bad key: the API's own error, shown as it said it.
        sign_in(driver, stack, "sf_nope_not-a-key")
        seen.login_error = wait_for(driver, lambda d: one(d, "login-error").text, "the login error")
        shot("sign-in")

        sign_in(driver, stack, stack.tenant_key)
        wait_for(driver, lambda d: len(by_testid(d, "instance-row")) >= 4, "four instance rows")
        seen.listed = rows(driver, "instance-row", "data-instance-id")
        # Live: an instance started meanwhile shows up without a reload.
        late = api.post("/v1/instances", json={"definitionKey": "approval"}).json()["id"]
        seen.live_row = bool(
            wait_for(
                driver,
                lambda d: late in rows(d, "instance-row", "data-instance-id"),
                "the late instance's row",
            )
        )
        shot("instances")
        # The id filter: a prefix typed in, the server filters (idPrefix).
        one(driver, "filter-id").send_keys(waiting[:8])
        seen.filtered = wait_for(
            driver,
            lambda d: (found := rows(d, "instance-row", "data-instance-id")) == [waiting] and found,
            "only the instance with that id prefix",
        )

        one(driver, "nav-inbox").click()
        wait_for(driver, lambda d: len(by_testid(d, "task-row")) >= 5, "five inbox rows")
        seen.inbox = rows(driver, "task-row", "data-task-id")
        assert task_of(waiting) in seen.inbox
        shot("inbox")

        # Open the instance from the list, as a person does.
        one(driver, "nav-instances").click()
        row = wait_for(
            driver,
            lambda d: next(
                (
                    r
                    for r in by_testid(d, "instance-row")
                    if r.get_attribute("data-instance-id") == waiting
                ),
                None,
            ),
            "the waiting instance's row",
        )
        row.find_elements(By.TAG_NAME, "td")[1].click()  # anywhere on the row
        wait_for(driver, lambda d: d.current_url.endswith(f"/ui/instances/{waiting}"), "url")
        seen.active_before = wait_for(driver, active_states, "a highlighted state")
        seen.active_attribute = one(driver, "state-diagram").get_attribute("data-active-states")
        wait_for(driver, lambda d: by_testid(d, "task-row"), "the task row")
        shot("instance")

        one(driver, "task-complete").click()
        output = one(driver, "task-output")
        output.clear()
        output.send_keys('{"approvedBy": "ada"}')
        one(driver, "task-complete-confirm").click()
        _status(driver, "done")
        seen.active_after = wait_for(
            driver,
            lambda d: (states := active_states(d)) != seen.active_before and states,
            "the diagram to move on",
        )
        wait_for(
            driver,
            lambda d: any("APPROVED" in r.text for r in by_testid(d, "history-row")),
            "the APPROVED audit row",
        )
        seen.history_types = [
            r.find_element(By.CSS_SELECTOR, "strong").text for r in by_testid(driver, "history-row")
        ]
        seen.task_status_after = wait_for(
            driver,
            lambda d: (s := one(d, "task-status").text) != "pending" and s,
            "the task to leave pending",
        )
        seen.actions_after = [b.is_displayed() for b in by_testid(driver, "instance-cancel")]
        shot("instance-done")

        # Send events, then cancel another, from their pages. The first carries what an
        # AI task's completion carries (docs/ai.md), which the audit log spells out.
        driver.get(f"{stack.url}/ui/instances/{to_send}")
        _status(driver, "running")
        one(driver, "instance-send-type").send_keys("TRIAGED")
        one(driver, "instance-send-payload").send_keys(AI_OUTPUT)
        one(driver, "instance-send").click()
        seen.ai_decision = wait_for(driver, lambda d: one(d, "ai-decision").text, "the decision")
        one(driver, "instance-send-type").send_keys("REJECTED")
        one(driver, "instance-send").click()
        seen.sent_status = _status(driver, "done")
        driver.get(f"{stack.url}/ui/instances/{to_cancel}")
        _status(driver, "running")
        one(driver, "instance-cancel").click()
        seen.cancelled_status = _status(driver, "cancelled")

        # Fail a HUMAN task (no failureEvent: the instance fails), then retry it.
        driver.get(f"{stack.url}/ui/instances/{to_fail}")
        _status(driver, "running")
        one(driver, "task-complete").click()  # open the form, then go back without acting
        one(driver, "task-form-cancel").click()
        seen.form_closed = wait_for(
            driver,
            lambda d: not by_testid(d, "task-output") and bool(by_testid(d, "task-fail")),
            "the task's buttons back",
        )
        one(driver, "task-fail").click()
        one(driver, "task-fail-reason").send_keys("not enough evidence")
        one(driver, "task-fail-confirm").click()
        seen.failed_status = _status(driver, "failed")
        seen.failed_error = one(driver, "instance-error").text
        one(driver, "task-retry").click()
        seen.retried_status = _status(driver, "running")

        # A batch and its progress bar: 3 instances, each waiting on a person.
        batch = api.post(
            "/v1/batches", json={"definitionKey": "approval", "inputs": [{}, {}, {}]}
        ).json()["batchId"]
        one(driver, "nav-batches").click()
        bar = wait_for(
            driver,
            lambda d: next(
                (
                    r.find_element(By.CSS_SELECTOR, '[data-testid="batch-progress"]')
                    for r in by_testid(d, "batch-row")
                    if r.get_attribute("data-batch-id") == batch
                ),
                None,
            ),
            "the batch's progress bar",
        )
        seen.batch_bar = (bar.get_attribute("value") or "", bar.get_attribute("max") or "")
        shot("batches")

        one(driver, "nav-definitions").click()
        one(driver, "definition-row").find_element(By.CSS_SELECTOR, "a").click()
        wait_for(driver, lambda d: one(d, "state-diagram").find_elements(By.TAG_NAME, "svg"), "svg")
        wait_for(driver, lambda d: by_testid(d, "version-row"), "instances per version")
        shot("definition")
        seen.console_errors = csp_violations(driver)

        # Another tenant sees none of it, not even by the instance's address.
        sign_out(driver)
        sign_in(driver, stack, stack.other_key)
        one(driver, "instances-empty")
        seen.other_listed = rows(driver, "instance-row", "data-instance-id")
        one(driver, "nav-inbox").click()
        one(driver, "inbox-empty")
        seen.other_inbox = rows(driver, "task-row", "data-task-id")
        driver.get(f"{stack.url}/ui/instances/{waiting}")
        seen.other_direct = one(driver, "error").text
        sign_out(driver)

        # The admin key reads the dead letters, and only those.
        sign_in(driver, stack, ADMIN_KEY)
        wait_for(driver, lambda d: d.current_url.endswith("/ui/dead-letters"), "dead letters")
        seen.admin_heading = wait_for(
            driver, lambda d: d.find_element(By.TAG_NAME, "h1").text, "the heading"
        )
        sign_out(driver)
    return seen

"""Locust users of the statefleet HTTP API: people and services driving hello workflows.

Each simulated user holds the ``default`` tenant's API key (``STATEFLEET_API_KEY``,
sent as ``Authorization: Bearer``) and does what a client of the API does all day
with the hello workflow (``tests/fixtures/hello-workflow.json``):

- **start** an instance (weight 4): the write that matters. It inserts the instance,
  its ``xstate.init`` audit row and the queued ``WORKFLOW_START``; the engine then
  runs the ``EMAIL`` task, whose ``HELLO_SENT`` completion finishes the instance. Every
  start therefore also loads the shards, the executor pool and the mail sink behind
  the API, which is the point of an end-to-end load test.
- **start and confirm** (weight 2): start an instance and post ``HELLO_SENT`` to it
  straight away, as a caller that holds its own delivery receipt does. ``HELLO_SENT``
  is the only event the hello workflow handles once started, and an instance runs for
  only ~60 ms (until its email task completes), so an event sent after any think time
  would always find it finished; sent at once it mostly reaches it running (202,
  applied: the instance finishes on it and its email task is cancelled, which the
  engine does by design). When the email task wins the race the answer is 409
  ``instance_finished`` (docs/api.md). Both answers are the API working as documented,
  so both are successes, counted under separate names so that the table shows how
  many events reached a running instance. Starting is thus 6 of every 10 tasks.
- **poll** one of its instances (``GET /v1/instances/{id}``, weight 3): clients poll
  for status more often than they do anything but start work.
- **read the history** of one of its instances (weight 1): the audit view, read rarely.

The hello workflow is deployed once by the first user of each Locust process
(``POST /v1/definitions`` is idempotent: the same spec again answers 200). Users wait
0.2-1 s between tasks: people and services think between calls, and a closed loop
without think time would only measure how fast Locust itself can spin on 2 cores.

Only real failures are failures: a status or body that the documented API would not
give for that request (including 401 for a wrong key and every 5xx) is marked failed
with the status and the error code of the body; the expected answers above are
successes. Run it with ``python -m benchmarks.loadtest`` (which starts a fresh
``statefleet up``), or against a running server::

    STATEFLEET_API_KEY=sf_... locust -f benchmarks/locustfile.py --host http://127.0.0.1:8080
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import uuid
from collections import deque
from typing import Any

import gevent
from gevent.lock import Semaphore
from locust import HttpUser, between, events, task
from locust.clients import ResponseContextManager
from locust.env import Environment
from locust.stats import CSV_STATS_INTERVAL_SEC

HELLO_PATH = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/hello-workflow.json"
HELLO: dict[str, Any] = json.loads(HELLO_PATH.read_text())
DEFINITION_KEY: str = HELLO["id"]
#: The event the hello workflow handles after start (``notify`` -> ``done``).
EVENT_TYPE = "HELLO_SENT"
#: Instance ids each user remembers (the ones it polls and reads the history of).
REMEMBERED = 50

EVENTS = "/v1/instances/[id]/events"
EVENTS_FINISHED = "/v1/instances/[id]/events (409 instance_finished)"


@events.init.add_listener
def _require_key(environment: Environment, **_: Any) -> None:
    if not os.environ.get("STATEFLEET_API_KEY"):
        raise SystemExit(
            "STATEFLEET_API_KEY is not set: export the tenant key that `statefleet up` "
            "prints (or run `python -m benchmarks.loadtest`)"
        )


@events.quitting.add_listener
def _final_csv(environment: Environment, **_: Any) -> None:
    """Lets ``--csv`` write the final figures before Locust exits.

    Locust rewrites ``_stats.csv`` once a second and not at exit, so the file can miss
    the last second of requests, failures included. The users have stopped by now; one
    more pass of its writer makes the file match the summary Locust prints.
    """
    if getattr(environment.parsed_options, "csv_prefix", None):
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.5)


def _body(response: ResponseContextManager) -> dict[str, Any] | None:
    try:
        data = response.json()
    except Exception:  # not JSON, or no response at all
        return None
    return data if isinstance(data, dict) else None


def _error(response: ResponseContextManager) -> str:
    """``<status> <code>: <message>`` for the failure table (status 0: no response)."""
    if response.status_code == 0:
        return f"no response: {response.error!r}"
    error = (_body(response) or {}).get("error") or {}
    if isinstance(error, dict) and error.get("code"):
        return f"{response.status_code} {error['code']}: {error.get('message', '')}"
    return f"{response.status_code}: {response.text[:200]}"


class StatefleetUser(HttpUser):
    """A client of one tenant starting, polling and signalling hello workflows."""

    host = os.environ.get("STATEFLEET_URL")  # --host overrides it
    wait_time = between(0.2, 1.0)

    _deploy_lock = Semaphore()
    _deployed = False

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {os.environ['STATEFLEET_API_KEY']}"
        self.instances: deque[str] = deque(maxlen=REMEMBERED)
        # One deploy per process: later users wait for the first one, then skip it.
        with StatefleetUser._deploy_lock:
            if not StatefleetUser._deployed:
                StatefleetUser._deployed = self.deploy()

    def deploy(self) -> bool:
        with self.client.post(
            "/v1/definitions",
            json={"spec": HELLO},
            name="/v1/definitions",
            catch_response=True,
        ) as response:
            body = _body(response) or {}
            if response.status_code in (200, 201) and body.get("key") == DEFINITION_KEY:
                response.success()
                return True
            response.failure(_error(response))
            return False

    def _start(self) -> str | None:
        """Starts a hello instance; its id, remembered, or None (a failure)."""
        with self.client.post(
            "/v1/instances",
            json={"definitionKey": DEFINITION_KEY, "input": {"user": str(uuid.uuid4())}},
            name="/v1/instances",
            catch_response=True,
        ) as response:
            body = _body(response) or {}
            if response.status_code == 201 and isinstance(body.get("id"), str):
                response.success()
                self.instances.append(body["id"])
                return str(body["id"])
            response.failure(_error(response))
            return None

    @task(4)
    def start_instance(self) -> None:
        self._start()

    @task(2)
    def start_and_confirm(self) -> None:
        instance_id = self._start()
        if instance_id is None:
            return
        with self.client.post(
            f"/v1/instances/{instance_id}/events",
            json={"type": EVENT_TYPE, "payload": {"via": "locust"}, "id": f"lt-{uuid.uuid4()}"},
            name=EVENTS,
            catch_response=True,
        ) as response:
            body = _body(response) or {}
            error = body.get("error")
            if response.status_code == 202 and body.get("eventId"):
                response.success()
            elif (
                response.status_code == 409
                and isinstance(error, dict)
                and error.get("code") == "instance_finished"
            ):
                # Documented: the email task finished the instance first. Not a failure.
                response.request_meta["name"] = EVENTS_FINISHED
                response.success()
            else:
                response.failure(_error(response))

    @task(3)
    def poll_instance(self) -> None:
        if not self.instances:
            self._start()
            return
        instance_id = random.choice(self.instances)
        with self.client.get(
            f"/v1/instances/{instance_id}", name="/v1/instances/[id]", catch_response=True
        ) as response:
            body = _body(response) or {}
            if response.status_code == 200 and body.get("id") == instance_id:
                response.success()
            else:
                response.failure(_error(response))

    @task(1)
    def read_history(self) -> None:
        if not self.instances:
            self._start()
            return
        instance_id = random.choice(self.instances)
        with self.client.get(
            f"/v1/instances/{instance_id}/history",
            name="/v1/instances/[id]/history",
            catch_response=True,
        ) as response:
            body = _body(response) or {}
            if response.status_code == 200 and isinstance(body.get("items"), list):
                response.success()
            else:
                response.failure(_error(response))

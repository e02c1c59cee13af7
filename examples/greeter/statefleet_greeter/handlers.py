"""Two task handlers, registered through the ``statefleet.handlers`` entry points.

``GREET`` is the simplest form: a module-level async function. ``LEDGER`` is the form
for a handler with settings and a client of its own: a class, which statefleet
instantiates once per executor pool (``Ledger(env)``, ``env`` holding the variables
``STATEFLEET_HANDLER_ENV`` names) and closes when the pool stops (``aclose``).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any, TextIO

from statefleet.engine.handlers import PermanentTaskError, TaskContext

__all__ = ["LEDGER_VARIABLE", "Ledger", "greet"]

#: The ledger file's path; put ``GREETER_`` in ``STATEFLEET_HANDLER_ENV`` to hand it over.
LEDGER_VARIABLE = "GREETER_LEDGER"


async def greet(task: TaskContext) -> dict[str, Any]:
    """``{"name": "Ada"}`` -> ``{"greeting": "Hello, Ada!"}``, the completion's payload.

    A missing name can never succeed, so it fails the task at once (no retries).
    """
    data = task.input if isinstance(task.input, dict) else {}
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PermanentTaskError("GREET needs a non-empty string `name` in its input")
    return {"greeting": f"Hello, {name.strip()}!"}


class Ledger:
    """Appends one JSON line per task to a file, once per idempotency key.

    The open file stands for any client a handler keeps (an HTTP session, a database
    pool): opened once here, reused by every task of this executor, closed by
    ``aclose``. A task can run twice (a pool died after the write, before its result
    was committed); the idempotency key is the same on every attempt, so a key already
    in the ledger is not written again.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        path = env.get(LEDGER_VARIABLE)
        self._stream: TextIO | None = None
        self._keys: set[str] = set()
        self.problem = None if path else f"{LEDGER_VARIABLE} is not set"
        if path:
            ledger = pathlib.Path(path)
            if ledger.exists():
                lines = ledger.read_text().splitlines()
                self._keys = {json.loads(line)["key"] for line in lines if line}
            self._stream = ledger.open("a")

    async def __call__(self, task: TaskContext) -> dict[str, Any]:
        if self._stream is None:
            raise PermanentTaskError(f"LEDGER cannot write: {self.problem}")
        if task.idempotency_key in self._keys:
            return {"recorded": False, "reason": "already in the ledger"}
        entry = {"key": task.idempotency_key, "instance": task.instance_id, "input": task.input}
        # A line of a few hundred bytes: writing it blocks less than an await would cost.
        self._stream.write(json.dumps(entry) + "\n")
        self._stream.flush()
        self._keys.add(task.idempotency_key)
        return {"recorded": True}

    async def aclose(self) -> None:
        """Called once when the executor pool stops."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

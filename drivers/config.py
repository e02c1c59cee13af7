"""Queue driver selection from the environment, as the workflow engine seed specifies.

``WORKFLOW_QUEUE_DRIVER`` names the driver: ``memory``, ``bullmq`` or
``cloudtasks``. When it is unset (or empty), BullMQ is chosen if ``REDIS_URL`` is
set or ``APP_ENV`` is ``production``, and the memory driver otherwise, so a
developer machine needs nothing and a production deploy never silently runs on
process-local queues. Selection is a pure function of an environment mapping;
building the driver is a separate step, so both are easy to test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, Literal, get_args

from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.ports import Queue

__all__ = [
    "DriverName",
    "DriverNotImplementedError",
    "QueueConfigError",
    "create_queue",
    "select_driver",
]

DriverName = Literal["memory", "bullmq", "cloudtasks"]

DRIVER_VARIABLE: Final = "WORKFLOW_QUEUE_DRIVER"
DRIVER_NAMES: Final[tuple[DriverName, ...]] = tuple(sorted(get_args(DriverName)))


class QueueConfigError(ValueError):
    """The environment asks for a queue driver that does not exist; raised at startup."""


class DriverNotImplementedError(NotImplementedError):
    """The environment selects a driver this version of statefleet does not ship yet."""


def select_driver(env: Mapping[str, str]) -> DriverName:
    """The queue driver the environment ``env`` selects.

    The value of ``WORKFLOW_QUEUE_DRIVER`` is matched ignoring case and surrounding
    whitespace; an empty value counts as unset, as does an empty ``REDIS_URL``.

    Raises:
        QueueConfigError: ``WORKFLOW_QUEUE_DRIVER`` is set to an unknown name; the
            message names the variable and the valid values.
    """
    raw = env.get(DRIVER_VARIABLE, "").strip()
    if raw:
        name = raw.lower()
        for known in DRIVER_NAMES:
            if name == known:
                return known
        valid = ", ".join(DRIVER_NAMES)
        raise QueueConfigError(
            f"{DRIVER_VARIABLE}={raw!r} is not a queue driver; use one of: {valid}"
        )
    if env.get("REDIS_URL", "").strip():
        return "bullmq"
    if env.get("APP_ENV", "").strip().lower() == "production":
        return "bullmq"
    return "memory"


def create_queue(env: Mapping[str, str] | None = None) -> Queue:
    """Build the queue driver that ``env`` (default: ``os.environ``) selects.

    Raises:
        QueueConfigError: as :func:`select_driver`.
        DriverNotImplementedError: the selected name has no driver (``select_driver``
            refuses such names first, so only a direct caller can meet it).
        statefleet.drivers.cloudtasks.CloudTasksConfigError: Cloud Tasks is selected
            and a required variable is missing (a ``ValueError``, like ``QueueConfigError``).
    """
    env = os.environ if env is None else env
    name = select_driver(env)
    if name == "memory":
        return MemoryQueue()
    if name == "bullmq":
        from statefleet.drivers.bullmq import bullmq_queue_from_env

        return bullmq_queue_from_env(env)
    if name == "cloudtasks":
        from statefleet.drivers.cloudtasks import cloudtasks_queue_from_env

        return cloudtasks_queue_from_env(env)
    raise DriverNotImplementedError(
        f"no queue driver {name!r}: the drivers are memory, bullmq and cloudtasks "
        f"(set {DRIVER_VARIABLE})"
    )

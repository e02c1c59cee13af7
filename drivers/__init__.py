"""Queue drivers (memory, BullMQ, Cloud Tasks) behind the engine's queue port.

:func:`create_queue` builds the driver the environment selects (see
:mod:`statefleet.drivers.config`); :class:`MemoryQueue` is the process-local driver
for tests and single-process runs.
"""

from statefleet.drivers.config import (
    DriverName,
    DriverNotImplementedError,
    QueueConfigError,
    create_queue,
    select_driver,
)
from statefleet.drivers.memory import MemoryBackend, MemoryQueue

__all__: list[str] = [
    "DriverName",
    "DriverNotImplementedError",
    "MemoryBackend",
    "MemoryQueue",
    "QueueConfigError",
    "create_queue",
    "select_driver",
]

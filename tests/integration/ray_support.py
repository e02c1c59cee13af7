"""One local Ray per test session, and Ray backends on it.

Starting Ray takes seconds, so the session starts it once (``local_ray`` in
``conftest.py``), bound to 127.0.0.1, with the custom resources the shard and pool
actors reserve declared, so the tests place actors exactly as a cluster would. Test
modules whose handler factories the actors call are pickled by value: Ray's worker
processes cannot import ``tests/``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

with warnings.catch_warnings():
    # Ray's import pulls in modules that emit DeprecationWarnings of their own
    # (not statefleet's); pytest runs with warnings as errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray
    import ray.cloudpickle

    from statefleet.actors.backend import RayBackend, loopback_only
    from statefleet.actors.factory import POOL_RESOURCE, SHARD_RESOURCE

from statefleet.engine.handlers import HandlerFactory
from statefleet.engine.runtime import EngineSettings

#: Modules whose functions are shipped to the actors by value.
BY_VALUE = ("e2e_handlers",)


@contextmanager
def local_ray() -> Iterator[None]:
    loopback_only()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=200 * 1024**2,
            resources={SHARD_RESOURCE: 64, POOL_RESOURCE: 64},
        )
    for name in BY_VALUE:
        __import__(name)
        ray.cloudpickle.register_pickle_by_value(sys.modules[name])
    try:
        yield
    finally:
        ray.shutdown()


def ray_backend(dsn: str, handlers: HandlerFactory, settings: EngineSettings) -> Any:
    """Shard and pool actors for ``dsn`` on the session's Ray (``local_ray`` must run)."""
    assert ray.is_initialized(), "request the local_ray fixture"
    return RayBackend.start(dsn, handlers, settings, resources="require")

"""Ray hosts for the engine: instance shards and executor pools as Ray actors.

Actors are thin: they wrap the plain classes of ``statefleet.engine.runtime.hosts``
and ``ray.remote`` is applied in one place (``factory``), so everything they do is
testable without Ray. ``RayBackend`` lives in ``statefleet.actors.backend``
(importing it imports Ray); the engine loop above it is ``statefleet.engine``'s.
"""

__all__: list[str] = []

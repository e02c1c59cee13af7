"""Ray hosts for the engine: instance shards, the sharded dispatcher and executor pools.

Actors are thin: they wrap plain classes from ``statefleet.engine`` and apply
``ray.remote`` in one place, so everything they do is testable without Ray.
``RayEngine`` lives in ``statefleet.actors.engine`` (importing it imports Ray).
"""

from statefleet.actors.config import ActorSettings

__all__ = ["ActorSettings"]

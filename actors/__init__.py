"""Ray hosts for the engine: instance shards, the sharded dispatcher and executor pools.

Actors are thin: they wrap plain classes from ``statefleet.engine`` and apply
``ray.remote`` in one place, so everything they do is testable without Ray.
"""

__all__: list[str] = []

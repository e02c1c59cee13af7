"""The pure core of statefleet: spec, interpreter, and (later) store, runtime, handlers.

Nothing here imports ``statefleet.actors`` or ``statefleet.drivers``; the engine
declares the ports it needs and the outer layers implement them.
"""

__all__: list[str] = []

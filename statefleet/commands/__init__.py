"""CLI commands beyond the local ones in ``statefleet.cli``; each module has ``register(group)``."""

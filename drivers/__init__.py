"""Queue drivers (memory, BullMQ, Cloud Tasks) behind the engine's queue port."""

__all__: list[str] = []

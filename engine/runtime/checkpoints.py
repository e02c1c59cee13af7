"""Checkpoints held in memory: the hook that lets an actor skip re-reading its instance.

The runtime reads an instance's checkpoint (snapshot, version, last audit seq) before
every step. An actor that hosts the instance already has it from its previous step,
so :class:`InstanceRuntime` asks an optional :class:`CheckpointCache` first and only
loads the misses. The cache is an optimisation, never the truth: a cached checkpoint
that another writer has since overtaken loses the optimistic version check, the
runtime drops it, and the retry reads Postgres.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from statefleet.engine.record import record

__all__ = ["Checkpoint", "CheckpointCache", "InstanceKey", "RecentCheckpoints"]

#: An instance's identity: (tenant id, instance id).
InstanceKey = tuple[str, uuid.UUID]


@record
class Checkpoint:
    """A committed step of one instance, as ``load_instances`` returns it."""

    tenant_id: str
    instance_id: uuid.UUID
    definition_id: uuid.UUID
    status: str
    snapshot: dict[str, Any]
    version: int
    last_seq: int | None

    @property
    def key(self) -> InstanceKey:
        return (self.tenant_id, self.instance_id)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Checkpoint:
        return cls(
            tenant_id=r["tenant_id"],
            instance_id=r["id"],
            definition_id=r["definition_id"],
            status=r["status"],
            snapshot=r["snapshot"],
            version=r["version"],
            last_seq=r["last_seq"],
        )


class CheckpointCache(Protocol):
    """Where the runtime looks for checkpoints before loading them.

    Obligations: ``get`` returns only checkpoints previously ``put`` (or ``None``);
    ``put`` is called after the step's transaction committed, never before; ``drop``
    forgets the instance (its copy lost a version check, or it stopped running). All
    three are synchronous and cheap: they run inside the runtime's batch loop.
    """

    def get(self, key: InstanceKey) -> Checkpoint | None: ...

    def put(self, checkpoint: Checkpoint) -> None: ...

    def drop(self, key: InstanceKey) -> None: ...


class RecentCheckpoints:
    """A :class:`CheckpointCache` of the most recently stepped instances (LRU, bounded).

    For a runtime used without a shard (the transitions benchmark, race tests):
    an instance's next event usually follows its last one closely (a task's completion,
    a reply), so keeping the last ``max_entries`` checkpoints spares most steps the
    read. The bound keeps memory flat whatever the number of instances.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[InstanceKey, Checkpoint] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: InstanceKey) -> Checkpoint | None:
        return self._entries.get(key)

    def put(self, checkpoint: Checkpoint) -> None:
        self._entries[checkpoint.key] = checkpoint
        self._entries.move_to_end(checkpoint.key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, key: InstanceKey) -> None:
        self._entries.pop(key, None)

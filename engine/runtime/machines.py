"""Compiled machines by definition id: definition rows are immutable, so cache forever (LRU)."""

from __future__ import annotations

import uuid
from collections import OrderedDict

from statefleet.engine.interpreter import Machine, load_machine
from statefleet.engine.store.db import Connection
from statefleet.engine.store.queries import load_queries

__all__ = ["MachineCache", "UnknownDefinition"]

SQL = load_queries("definitions.sql")


class UnknownDefinition(LookupError):
    pass


class MachineCache:
    def __init__(self, max_size: int = 1024) -> None:
        self.max_size = max_size
        self._machines: OrderedDict[uuid.UUID, Machine] = OrderedDict()

    def put(self, definition_id: uuid.UUID, machine: Machine) -> None:
        self._machines[definition_id] = machine
        self._machines.move_to_end(definition_id)
        while len(self._machines) > self.max_size:
            self._machines.popitem(last=False)

    def peek(self, definition_id: uuid.UUID) -> Machine | None:
        """The machine if it is compiled already (no I/O, no change to the LRU order)."""
        return self._machines.get(definition_id)

    async def get(
        self, connection: Connection, tenant_id: str, definition_id: uuid.UUID
    ) -> Machine:
        machine = self._machines.get(definition_id)
        if machine is not None:
            self._machines.move_to_end(definition_id)
            return machine
        record = await connection.fetchrow(SQL["get_definition_by_id"], tenant_id, definition_id)
        if record is None:
            raise UnknownDefinition(f"definition {definition_id} not found for tenant {tenant_id}")
        machine = load_machine(record["spec"])
        self.put(definition_id, machine)
        return machine

"""Replaying an instance's history on another definition version: pure, no I/O.

An upgrade from version A to version B asks, for each running instance of A: had this
instance run on B from the start, with the same input and the same events, would it
be where it is now (with the state map applied) and hold the same context? The audit
log holds every event the instance applied and the interpreter is a pure function, so
the answer is computed, not guessed: :func:`judge` replays the history on B from
``xstate.init`` and compares every step with the recorded one.

It also says what moving the instance would do to its open tasks and timers
(:func:`plan_open_work`). Both the dry run (``upgrades.py``, in bulk) and the move
itself (in the shard's step, against the exact checkpoint being replaced) call these
functions, so the two can never disagree on the rules. ``statefleet simulate
--history`` replays the same way, offline.

State names are dotted paths of state keys from the root (``review``,
``payment.card.pending``); a state map entry renames a state and everything under it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from statefleet.engine.interpreter import Machine, Snapshot
from statefleet.engine.interpreter.algorithm import config_from_value, value_of
from statefleet.engine.interpreter.values import EvaluationError, copy_json
from statefleet.engine.record import record

__all__ = [
    "INIT_EVENT",
    "UPGRADE_EVENT",
    "Divergence",
    "HistoryEntry",
    "OpenWork",
    "ReplayCache",
    "Verdict",
    "VerdictName",
    "WorkMove",
    "is_replayed",
    "judge",
    "leaf_paths",
    "map_value",
    "plan_open_work",
    "state_paths",
]

INIT_EVENT = "xstate.init"
#: The audit entry of a move between versions (and the engine-made event that asks for it).
UPGRADE_EVENT = "xstate.upgrade"
#: Audit rows the front door writes without a transition (cancel, task retried): not events.
_OUTSIDE_PREFIX = "statefleet."
_AFTER_PREFIX = "xstate.after."

VerdictName = Literal["compatible", "diverged", "unmappable", "error"]


@record
class HistoryEntry:
    """One audit row, as much of it as a replay reads."""

    seq: int
    type: str
    payload: Any
    state_after: Any
    effects: Sequence[Mapping[str, Any]] = ()


@record
class OpenWork:
    """An open (pending or running) task or timer of the instance."""

    id: uuid.UUID
    kind: str  # "task" or "timer"
    name: str  # a timer's name is its event, xstate.after.<ms>.<state id>
    idempotency_key: str | None
    created_at: datetime


@record
class WorkMove:
    """What a move does to one open task or timer."""

    id: uuid.UUID
    kind: str
    name: str
    action: Literal["kept", "cancelled", "rearmed"]
    idempotency_key: str | None = None
    #: For a re-armed timer: B's event, its delay, and when it now fires.
    event: str | None = None
    delay_ms: int | None = None
    run_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "taskId": str(self.id),
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
        }
        if self.action == "rearmed":
            out.update(event=self.event, delayMs=self.delay_ms)
            out["runAt"] = self.run_at.isoformat() if self.run_at else None
        return out

    def effects(self) -> list[dict[str, Any]]:
        """The move as effect shapes for the audit row (cancelTask/Timer, scheduleTimer)."""
        if self.action == "kept":
            return []
        if self.kind == "timer":
            out: list[dict[str, Any]] = [{"type": "cancelTimer", "event": self.name}]
            if self.action == "rearmed":
                out.append({"type": "scheduleTimer", "event": self.event, "delay": self.delay_ms})
            return out
        if self.idempotency_key is not None:
            return [{"type": "cancelTask", "idempotencyKey": self.idempotency_key}]
        return [{"type": "cancelTask", "name": self.name}]


@record
class Divergence:
    """Where the replay left the recorded path: the first step that differs."""

    seq: int
    event: str
    expected: Any
    got: Any
    #: "state" (the state value differs) or "context" (same final state, other context).
    reason: Literal["state", "context"] = "state"

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event": self.event,
            "expected": self.expected,
            "got": self.got,
            "reason": self.reason,
        }


@record
class Verdict:
    """The dry run's answer for one instance, and the snapshot a move would write."""

    verdict: VerdictName
    #: The mapped current state as B spells it (None when unmappable).
    target_value: Any = None
    #: The instance's context, with the fields it lacks filled from B and the defaults.
    target_context: dict[str, Any] | None = None
    divergence: Divergence | None = None
    #: Why: the unmappable state, or the failing guard/expression (with seq and event).
    message: str | None = None
    error_seq: int | None = None
    work: list[WorkMove] = field(default_factory=list)

    @property
    def snapshot(self) -> dict[str, Any]:
        """The checkpoint a move writes: the mapped state on B with the filled context."""
        return Snapshot(value=self.target_value, context=self.target_context or {}).as_dict()

    def detail(self) -> dict[str, Any]:
        """JSON for reports and the audit entry (camelCase, as on the wire)."""
        out: dict[str, Any] = {"verdict": self.verdict}
        if self.target_value is not None:
            out["targetState"] = self.target_value
        if self.divergence is not None:
            out["divergence"] = self.divergence.as_dict()
        if self.message is not None:
            out["message"] = self.message
        if self.error_seq is not None:
            out["seq"] = self.error_seq
        out["tasks"] = [w.as_dict() for w in self.work]
        return out


def is_replayed(event_type: str) -> bool:
    """Whether an audit row is an event the interpreter applied (and a replay re-applies)."""
    return event_type != UPGRADE_EVENT and not event_type.startswith(_OUTSIDE_PREFIX)


# -- state values <-> dotted paths ------------------------------------------------------


def leaf_paths(value: Any, prefix: str = "") -> list[str]:
    """``{"p": {"r1": "x", "r2": "y"}}`` -> ``["p.r1.x", "p.r2.y"]``; ``"a"`` -> ``["a"]``."""
    if isinstance(value, str):
        return [f"{prefix}{value}"]
    if isinstance(value, dict) and value:
        out: list[str] = []
        for key, sub in value.items():
            out.extend(leaf_paths(sub, f"{prefix}{key}."))
        return out
    return [prefix[:-1]] if prefix else []


def _value_of_paths(paths: Iterable[str]) -> Any:
    """The inverse of :func:`leaf_paths`."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        *parents, leaf = path.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node.setdefault(leaf, {})

    def collapse(node: dict[str, Any]) -> Any:
        if len(node) == 1:
            ((key, sub),) = node.items()
            return key if not sub else {key: collapse(sub)}
        return {key: collapse(sub) if sub else {} for key, sub in node.items()}

    return collapse(tree)


def _map_path(path: str, state_map: Mapping[str, str]) -> str:
    """The longest mapped prefix of ``path`` is replaced; an unmapped path maps to itself."""
    if not state_map:
        return path
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in state_map:
            return ".".join([state_map[head], *parts[cut:]])
    return path


def map_value(value: Any, state_map: Mapping[str, str]) -> Any:
    """A state value of A with the state map applied (not yet checked against B)."""
    if not state_map:
        return value
    return _value_of_paths(_map_path(p, state_map) for p in leaf_paths(value))


def state_paths(machine: Machine) -> dict[str, str]:
    """Dotted path -> node id, for every state of ``machine`` but the root."""
    return {".".join(n.path): n.id for n in machine.nodes if n.path}


def _normalise(machine: Machine, value: Any) -> Any:
    """``value`` as ``machine`` spells it (defaults of compound states entered).

    Raises:
        EvaluationError: the value names a state the machine does not have.
    """
    return value_of(machine.root, config_from_value(machine.root, value))


def _same_state(machine: Machine, recorded: Any, got: Any, state_map: Mapping[str, str]) -> bool:
    expected = map_value(recorded, state_map)
    if expected == got:
        return True
    try:
        return bool(_normalise(machine, expected) == got)
    except EvaluationError:
        return False


# -- the verdict ----------------------------------------------------------------------


@record
class _Path:
    """Where a replay went: its last snapshot, or the step that failed or left the path."""

    snapshot: Snapshot | None
    last_seq: int
    last_event: str
    divergence: Divergence | None = None
    message: str | None = None
    error_seq: int | None = None


class ReplayCache:
    """Replays already made, by history prefix: for one machine, map and defaults.

    A replay is a pure function of the machine, the state map, the defaults and the
    history (input, events and payloads, recorded states), so where two instances'
    histories begin alike (same input, same first events: nearly always the start), the
    replay of that prefix is made once and the rest resumes from its snapshot; identical
    histories need one replay between them. The key of a prefix is a BLAKE2b digest
    chained over each entry's JSON (seq, type, payload, recorded state), never a part
    of an entry, so a cached answer is the answer. Bounded: cleared when it holds
    ``max_entries``.
    """

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self.hits = 0
        self._paths: dict[bytes, _Path] = {}
        #: Current state value -> B's spelling of its mapping, or why it has none.
        self.targets: dict[bytes, tuple[Any, str | None]] = {}

    def get(self, key: bytes) -> _Path | None:
        found = self._paths.get(key)
        if found is not None:
            self.hits += 1
        return found

    def put(self, key: bytes, path: _Path) -> None:
        if len(self._paths) >= self.max_entries:
            self._paths.clear()
        self._paths[key] = path

    def target(
        self, machine: Machine, value: Any, state_map: Mapping[str, str]
    ) -> tuple[Any, str | None]:
        """:func:`_target`, remembered per state value (an instance has few distinct ones)."""
        key = orjson.dumps(value)
        found = self.targets.get(key)
        if found is None:
            if len(self.targets) >= self.max_entries:
                self.targets.clear()
            found = self.targets[key] = _target(machine, value, state_map)
        return found


def _target(machine: Machine, value: Any, state_map: Mapping[str, str]) -> tuple[Any, str | None]:
    """The mapped current state as ``machine`` spells it, or why it cannot (unmappable)."""
    try:
        return _normalise(machine, map_value(value, state_map)), None
    except EvaluationError as exc:
        return None, str(exc)


def _prefix_keys(events: Sequence[HistoryEntry]) -> list[bytes]:
    """One key per prefix of ``events``: a digest chained over the entries' JSON."""
    digest = hashlib.blake2b(digest_size=16)
    keys = []
    for e in events:
        digest.update(orjson.dumps((e.seq, e.type, e.payload, e.state_after)))
        keys.append(digest.copy().digest())
    return keys


def _replay(
    machine: Machine,
    events: Sequence[HistoryEntry],
    state_map: Mapping[str, str],
    defaults: Mapping[str, Any],
    cache: ReplayCache | None = None,
) -> _Path:
    """Runs ``events`` (the first is ``xstate.init``) on ``machine``, checking each state.

    With ``cache``, resumes after the longest prefix already replayed, and records each
    prefix it replays. A prefix that ended the replay (a divergence, an error) is the
    answer for every history that starts with it.
    """
    keys = _prefix_keys(events) if cache is not None else []
    begin = 0
    snapshot: Snapshot | None = None
    if cache is not None:
        for index in range(len(keys) - 1, -1, -1):
            found = cache.get(keys[index])
            if found is None:
                continue
            if found.divergence is not None or found.message is not None:
                return found
            if index == len(keys) - 1:
                return found
            snapshot, begin = found.snapshot, index + 1
            break
    path: _Path | None = None
    for index in range(begin, len(events)):
        entry = events[index]
        if index == 0:
            start_input = dict(defaults)
            start_input.update(entry.payload or {})
            step = machine.initial_state(start_input)
        else:
            assert snapshot is not None
            step = machine.transition(snapshot, {"type": entry.type, "payload": entry.payload})
        if step.status == "error":
            message = step.error if index == 0 else f"{entry.type}: {step.error}"
            path = _Path(None, entry.seq, entry.type, message=message, error_seq=entry.seq)
        else:
            snapshot = step.snapshot
            if _same_state(machine, entry.state_after, snapshot.value, state_map):
                path = _Path(snapshot, entry.seq, entry.type)
            else:
                expected = map_value(entry.state_after, state_map)
                diverged = Divergence(entry.seq, entry.type, expected, snapshot.value)
                path = _Path(snapshot, entry.seq, entry.type, divergence=diverged)
        if cache is not None:
            cache.put(keys[index], path)
        if path.divergence is not None or path.message is not None:
            return path
    assert path is not None, "a history has at least its xstate.init entry"
    return path


def judge(
    machine: Machine,
    history: Sequence[HistoryEntry],
    current: Snapshot,
    *,
    state_map: Mapping[str, str] | None = None,
    context_defaults: Mapping[str, Any] | None = None,
    cache: ReplayCache | None = None,
) -> Verdict:
    """Replays ``history`` on ``machine`` (version B) and compares it with ``current``.

    ``history`` is the instance's audit log in seq order, starting with its
    ``xstate.init`` row (whose payload is the start input). ``current`` is the
    checkpoint the move would replace. The replay starts from B's initial state with
    ``context_defaults`` under the input; each recorded state is mapped and compared
    with the replay's after the same event. ``cache`` (for one machine, map and
    defaults) lets identical histories share one replay.
    """
    state_map = state_map or {}
    defaults = dict(context_defaults or {})
    if cache is not None:
        target_value, unmappable = cache.target(machine, current.value, state_map)
    else:
        target_value, unmappable = _target(machine, current.value, state_map)
    if unmappable is not None:
        return Verdict("unmappable", message=unmappable)
    target_context = copy_json(machine.spec.context)
    target_context.update(defaults)
    target_context.update(current.context)
    events = [h for h in history if is_replayed(h.type)]
    if not events or events[0].type != INIT_EVENT:
        return Verdict(
            "error",
            target_value,
            target_context,
            message="the history does not start with xstate.init",
        )
    path = _replay(machine, events, state_map, defaults, cache)
    if path.message is not None:
        return Verdict(
            "error",
            target_value,
            target_context,
            message=path.message,
            error_seq=path.error_seq,
        )
    if path.divergence is not None:
        return Verdict("diverged", target_value, target_context, divergence=path.divergence)
    snapshot = path.snapshot
    assert snapshot is not None, "a replay that neither failed nor diverged has a snapshot"
    if snapshot.value != target_value or snapshot.status != "active":
        diverged = Divergence(path.last_seq, path.last_event, target_value, snapshot.value)
        return Verdict("diverged", target_value, target_context, divergence=diverged)
    if snapshot.context != target_context:
        diverged = Divergence(
            path.last_seq, path.last_event, target_context, snapshot.context, "context"
        )
        return Verdict("diverged", target_value, target_context, divergence=diverged)
    return Verdict("compatible", target_value, target_context)


# -- open tasks and timers ------------------------------------------------------------


def _created_in(history: Sequence[HistoryEntry], work: OpenWork) -> list[str]:
    """The leaf states the instance was in right after the step that created ``work``."""
    for entry in reversed(history):
        for effect in entry.effects:
            if effect.get("type") != "createTask":
                continue
            task = effect.get("task") or {}
            if work.idempotency_key is not None and task.get("idempotencyKey") is not None:
                hit = task.get("idempotencyKey") == work.idempotency_key
            else:
                hit = task.get("name") == work.name
            if hit:
                return leaf_paths(entry.state_after)
    return []


def plan_open_work(
    machine_a: Machine,
    machine_b: Machine,
    history: Sequence[HistoryEntry],
    work: Sequence[OpenWork],
    *,
    state_map: Mapping[str, str] | None = None,
) -> list[WorkMove]:
    """Kept, cancelled or re-armed, for each open task and timer.

    A state of A has a counterpart in B when B has it under the same path, or when the
    state map renames it to a path A does not have; mapped onto another state of A it
    was merged away, i.e. removed. A task belongs to the states the instance was in
    right after the step that created it: kept while they have counterparts, cancelled
    otherwise. A timer (``after``) belongs to its state: cancelled when the state has no
    counterpart or B's counterpart has no ``after``; kept when B's counterpart has the
    same timer event (same state id, same delay); otherwise re-armed to B's first
    ``after`` of that state, due at the time the timer was set plus B's delay.
    """
    state_map = state_map or {}
    paths_a = state_paths(machine_a)
    paths_b = state_paths(machine_b)
    path_of_a_id = {node_id: path for path, node_id in paths_a.items()}

    def counterpart(path: str) -> str | None:
        mapped = _map_path(path, state_map)
        if mapped not in paths_b:
            return None
        if mapped != path and mapped in paths_a:
            return None  # merged into another state of A: this one is gone
        return mapped

    moves: list[WorkMove] = []
    for item in work:
        if item.kind == "timer":
            moves.append(_timer_move(item, machine_b, paths_b, path_of_a_id, counterpart))
            continue
        origin = _created_in(history, item)
        gone = bool(origin) and any(counterpart(p) is None for p in origin)
        action: Literal["kept", "cancelled"] = "cancelled" if gone else "kept"
        moves.append(WorkMove(item.id, item.kind, item.name, action, item.idempotency_key))
    return moves


def _timer_move(
    item: OpenWork,
    machine_b: Machine,
    paths_b: Mapping[str, str],
    path_of_a_id: Mapping[str, str],
    counterpart: Any,
) -> WorkMove:
    state_id = item.name.split(".", 3)[3] if item.name.startswith(_AFTER_PREFIX) else ""
    path = path_of_a_id.get(state_id)
    target = counterpart(path) if path is not None else None
    if target is None:
        return WorkMove(item.id, item.kind, item.name, "cancelled", item.idempotency_key)
    node = machine_b.nodes_by_id[paths_b[target]]
    timers = [t for t in node.transitions if t.startswith(_AFTER_PREFIX)]
    if item.name in timers:
        return WorkMove(item.id, item.kind, item.name, "kept", item.idempotency_key)
    if not timers:
        return WorkMove(item.id, item.kind, item.name, "cancelled", item.idempotency_key)
    event = timers[0]
    delay_ms = int(event.split(".")[2])
    return WorkMove(
        item.id,
        item.kind,
        item.name,
        "rearmed",
        item.idempotency_key,
        event=event,
        delay_ms=delay_ms,
        run_at=item.created_at + timedelta(milliseconds=delay_ms),
    )

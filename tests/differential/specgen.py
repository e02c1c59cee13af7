"""Random, seeded workflow specs and event sequences for differential testing.

Each case is a contract-v1 spec plus 1-8 events, drawn from ``random.Random(seed)``
so a failing seed is a reproduction. The generator aims at the statechart
features whose XState semantics are easy to get subtly wrong: nested compound
states (depth <= 3), parallel states with 2-3 regions, final states and
``onDone``, guarded ``always`` transitions, ``after`` timers, entry/exit actions
(assign, createTask, raise, cancelTask, named actions with params), wildcard
handlers (``*``, ``order.*``), ``reenter``, ``always`` transitions in several
parallel regions that leave an ordered trace, some enabled by the event itself in a
compound region followed by an atomic one (precise point 13: entry order within a
macrostep, XState's restored order across them, a re-entered state's kept place), literal objects
that hold a ``$expr`` key beside others (precise point 12), targets by sibling key, ``.child``
and ``#id``, targetless transitions, and guards named/inline/and/or/not. It
also uses every shorthand the contract allows (bare target strings, ``cond``,
a single action instead of a list, a guard or action as a bare name).

Termination: every ``always`` transition is guarded by ``context.t < C`` and
increments ``t``; every handler that a raised or done event can reach (``R1``,
``R2``, ``order.created``, ``order.*``, ``*``, ``onDone``) is guarded by
``context.u < 6`` and increments ``u``; nothing lowers ``t`` or ``u``. So
eventless, raise and completion cycles all stop. As a safety net the runner
bounds a macrostep at 1000 microsteps, and then statefleet must report an
error status too.

Typing: expressions come from :mod:`expressions`; the context keeps one JSON
type per field (``n``/``k``/``t``/``d.x`` int, ``s`` string, ``f`` bool) so the
CEL texts never meet a type they do not accept.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Final

from expressions import BOOL_EXPRS, COUNTER_EXPRS, INT_EXPRS, STRING_EXPRS
from translate import iso_duration_ms

__all__ = ["GeneratedCase", "generate_case"]

MACHINE_ID: Final = "m"
EXTERNAL_EVENTS: Final = ("A", "B", "C", "order.created", "order.paid")
RAISED_EVENTS: Final = ("R1", "R2")
#: Handlers of these can see raised events; each is bounded by the ``u`` counter.
RAISE_REACHABLE: Final = frozenset({*RAISED_EVENTS, "order.created", "order.*", "*"})
_BUDGET_GUARD: Final = {"expr": "context.u < 6"}
_BUDGET_ACTION: Final = {"type": "assign", "path": "u", "value": {"$expr": "context.u + 1"}}
UNKNOWN_EVENTS: Final = ("ZZZ", "order.shipped")
DELAYS: Final = ("1000", "500", "PT2S", "2000", "PT0.25S", "P0D")
#: Keys of the context; the generator keeps each field's JSON type fixed.
BASE_CONTEXT: Final[dict[str, Any]] = {
    "n": 0,
    "k": 0,
    "t": 0,
    "u": 0,
    "s": "hi",
    "f": False,
    "d": {"x": 0},
}
NAMED_GUARDS: Final[dict[str, Any]] = {
    "isBig": "context.n > 2",
    "isEven": {"expr": "context.n % 2 == 0", "description": "n is even"},
    "hasX": "has(event.payload.x)",
}
PARAM_GUARDS: Final[dict[str, tuple[str, list[dict[str, Any]]]]] = {
    "atLeast": ("context.n >= params.min", [{"min": 0}, {"min": 1}, {"min": 3}]),
    "isType": ("event.type == params.type", [{"type": "A"}, {"type": "R1"}]),
}
NAMED_ACTIONS: Final[dict[str, Any]] = {
    "bump": {"type": "assign", "path": "n", "value": {"$expr": "context.n + 1"}},
    "notify": {
        "type": "createTask",
        "task": {
            "type": "EMAIL",
            "name": "notify",
            "input": {"to": {"$expr": "params.to"}, "n": {"$expr": "context.n"}},
            "idempotencyKey": {"$expr": '"task-" + params.to'},
        },
    },
    "ping": {"type": "raise", "event": {"type": "R1"}},
    "stopNotify": {"type": "cancelTask", "name": "notify"},
}
PARAM_ACTIONS: Final = frozenset({"notify"})


@dataclass
class GeneratedCase:
    """One differential case; ``events`` may hold ``{"$timer": i}`` placeholders."""

    seed: int
    spec: dict[str, Any]
    input: dict[str, Any] | None
    events: list[dict[str, Any]]


@dataclass
class _Node:
    key: str
    kind: str  # atomic / compound / parallel / final
    parent: _Node | None
    custom_id: str | None = None
    children: list[_Node] = field(default_factory=list)
    #: Give this state an event-enabled, traced ``always`` (see ``_Generator.fill``).
    eventless: bool = False

    @property
    def path(self) -> tuple[str, ...]:
        return () if self.parent is None else (*self.parent.path, self.key)

    @property
    def state_id(self) -> str:
        return self.custom_id or ".".join((MACHINE_ID, *self.path))

    def walk(self) -> list[_Node]:
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ids = 0
        self.guard_names = [n for n in NAMED_GUARDS if self.rng.random() < 0.6]
        self.param_guard_names = [n for n in PARAM_GUARDS if self.rng.random() < 0.5]
        self.action_names = [n for n in NAMED_ACTIONS if self.rng.random() < 0.5]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # --- structure -----------------------------------------------------------

    def structure(self) -> _Node:
        kind = "parallel" if self.chance(0.25) else "compound"
        root = _Node(MACHINE_ID, kind, None)
        self.fill(root, depth=1)
        return root

    def fill(self, node: _Node, depth: int) -> None:
        if node.kind == "parallel":
            count = self.rng.randint(2, 3)
            # Now and then a compound region before an atomic one, both with eventless
            # transitions an event enables: XState restores the atomic region first
            # (precise point 13), which document order would not.
            restored_order = depth < 3 and self.chance(0.15)
            for i in range(count):
                region_kind = "compound" if depth < 3 and self.chance(0.7) else "atomic"
                if restored_order:
                    region_kind = "compound" if i == 0 else "atomic"
                region = self.new_node(f"r{i}", region_kind, node)
                if region_kind == "compound":
                    self.fill(region, depth + 1)
                if restored_order:
                    (region.children[0] if i == 0 else region).eventless = True
            return
        count = self.rng.randint(2, 4)
        for i in range(count):
            options = ["atomic"] * 5 + ["final"] * 2
            if depth < 3:
                options += ["compound"] * 2 + ["parallel"]
            kind = self.rng.choice(options)
            if i == 0 and kind == "final" and not self.chance(0.1):
                kind = "atomic"
            child = self.new_node(f"s{i}", kind, node)
            if kind in ("compound", "parallel"):
                self.fill(child, depth + 1)

    def new_node(self, key: str, kind: str, parent: _Node) -> _Node:
        custom_id = None
        if self.chance(0.15):
            self.ids += 1
            custom_id = f"id{self.ids}"
        node = _Node(key, kind, parent, custom_id)
        parent.children.append(node)
        return node

    # --- guards and values -----------------------------------------------------

    def guard(self, depth: int = 0) -> Any:
        roll = self.rng.random()
        if depth < 2 and roll < 0.15:
            kind = self.rng.choice(["and", "or"])
            return {"type": kind, "guards": [self.guard(depth + 1) for _ in range(2)]}
        if depth < 2 and roll < 0.22:
            return {"type": "not", "guard": self.guard(depth + 1)}
        if self.guard_names and roll < 0.45:
            name = self.rng.choice(self.guard_names)
            return name if self.chance(0.5) else {"type": name}
        if self.param_guard_names and roll < 0.6:
            name = self.rng.choice(self.param_guard_names)
            return {"type": name, "params": self.rng.choice(PARAM_GUARDS[name][1])}
        return {"expr": self.rng.choice(list(BOOL_EXPRS))}

    def int_value(self) -> Any:
        if self.chance(0.25):
            return self.rng.randint(0, 4)
        return {"$expr": self.rng.choice(list(INT_EXPRS))}

    def string_value(self) -> Any:
        if self.chance(0.25):
            return self.rng.choice(["hi", "hey", ""])
        return {"$expr": self.rng.choice(list(STRING_EXPRS))}

    def any_value(self) -> Any:
        roll = self.rng.random()
        if roll < 0.3:
            return self.int_value()
        if roll < 0.5:
            return self.string_value()
        if roll < 0.6:
            return {"$expr": self.rng.choice(["[context.n, context.s]", "context.d", "context"])}
        if roll < 0.7:
            return {"$expr": '{"n": context.n, "type": event.type}'}
        if roll < 0.8:
            return {"lit": [1, "two", None, True], "v": self.int_value()}
        if roll < 0.88:
            # Precise point 12: `$expr` beside other keys is an ordinary literal key.
            return {"$expr": self.rng.choice(["context.n", "1"]), "v": self.int_value()}
        return [self.string_value(), {"deep": self.int_value()}]

    # --- actions ---------------------------------------------------------------

    def assignment(self) -> tuple[str, Any]:
        path = self.rng.choice(["n", "n", "k", "s", "f", "d.x", "e.z", "e.w.v"])
        if path in ("n", "k", "d.x"):
            return path, self.int_value()
        if path == "s":
            return path, self.string_value()
        if path == "f":
            return path, self.rng.choice([True, False, {"$expr": "!context.f"}])
        return path, self.any_value()

    def action(self) -> Any:
        roll = self.rng.random()
        if roll < 0.3:
            path, value = self.assignment()
            return {"type": "assign", "path": path, "value": value}
        if roll < 0.4:
            pairs = dict(self.assignment() for _ in range(self.rng.randint(2, 3)))
            return {"type": "assign", "assignments": pairs}
        if roll < 0.58:
            return {"type": "createTask", "task": self.task()}
        if roll < 0.72:
            event_type = self.rng.choice([*RAISED_EVENTS, *RAISED_EVENTS, "order.created"])
            event: dict[str, Any] = {"type": event_type}
            if self.chance(0.6):
                event["payload"] = {"x": self.int_value()}
            return {"type": "raise", "event": event}
        if roll < 0.8:
            if self.chance(0.5):
                return {"type": "cancelTask", "name": self.rng.choice(["t1", "t2"])}
            return {"type": "cancelTask", "idempotencyKey": {"$expr": '"k-" + string(context.n)'}}
        if self.action_names:
            name = self.rng.choice(self.action_names)
            if name in PARAM_ACTIONS:
                return {"type": name, "params": {"to": self.rng.choice(["ann", "bob"])}}
            return name if self.chance(0.5) else {"type": name}
        path, value = self.assignment()
        return {"type": "assign", "path": path, "value": value}

    def task(self) -> dict[str, Any]:
        task: dict[str, Any] = {
            "type": self.rng.choice(["HTTP", "EMAIL", "AI"]),
            "name": self.rng.choice(["t1", "t2"]),
            "input": self.any_value() if self.chance(0.3) else {"n": self.int_value(), "c": 1},
        }
        if self.chance(0.3):
            task["idempotencyKey"] = {"$expr": '"k-" + string(context.n)'}
        if self.chance(0.2):
            task["completionEvent"] = self.rng.choice(["A", "B", "order.paid"])
        if self.chance(0.1):
            task["failureEvent"] = "C"
        roll = self.rng.random()
        if roll < 0.15:  # `delay` and `runAt` are exclusive (the validator's rule)
            task["delay"] = self.rng.choice([500, "PT1S", {"$expr": "context.n + 1"}])
        elif roll < 0.25:
            task["runAt"] = "2030-01-01T00:00:00Z"
        return task

    def actions(self, low: int = 1, high: int = 2) -> Any:
        items = [self.action() for _ in range(self.rng.randint(low, high))]
        if len(items) == 1 and self.chance(0.3):
            return items[0]  # the single-action shorthand
        return items

    # --- transitions -----------------------------------------------------------

    def targets(self, source: _Node, root: _Node) -> list[str]:
        options: list[str] = []
        if source.parent is not None:
            options += [sibling.key for sibling in source.parent.children]
        if source.kind in ("compound", "parallel"):
            options += [f".{child.key}" for child in source.children]
        nodes = root.walk()
        with_id = [n for n in nodes if n.custom_id]
        if with_id and self.chance(0.5):
            target = self.rng.choice(with_id)
            options.append(f"#{target.custom_id}")
            if target.children:
                options.append(f"#{target.custom_id}.{self.rng.choice(target.children).key}")
        if self.chance(0.3):
            target = self.rng.choice(nodes)
            options.append(f"#{target.state_id}")
        return options

    def multi_target(self, root: _Node) -> list[str] | None:
        """Targets in two regions of one parallel state (an array target), if any exist."""
        parallels = [n for n in root.walk() if n.kind == "parallel" and len(n.children) >= 2]
        if not parallels:
            return None
        regions = self.rng.sample(self.rng.choice(parallels).children, 2)
        return [f"#{self.rng.choice(region.walk()).state_id}" for region in regions]

    def transition(self, source: _Node, root: _Node, *, guarded: bool) -> Any:
        targets = self.targets(source, root)
        target: str | list[str] | None = (
            self.rng.choice(targets) if targets and self.chance(0.8) else None
        )
        if self.chance(0.05):
            target = self.multi_target(root) or target
        if isinstance(target, str) and not guarded and self.chance(0.25):
            return target  # the bare-string shorthand
        out: dict[str, Any] = {}
        if target is not None:
            out["target"] = target
            if self.chance(0.2):
                out["reenter"] = True
        if guarded:
            out["cond" if self.chance(0.1) else "guard"] = self.guard()
        if self.chance(0.5):
            out["actions"] = self.actions()
        return out

    def transitions(self, source: _Node, root: _Node, *, budget: bool = False) -> Any:
        """A handler; with ``budget`` each transition spends one unit of ``u``.

        Handlers that raised events can reach are budgeted, so a raise cycle
        (entry raises R, R's handler re-enters the state) stops after a few rounds.
        """
        count = self.rng.randint(1, 2)
        items = [
            self.transition(source, root, guarded=(i < count - 1) or self.chance(0.3))
            for i in range(count)
        ]
        if budget:
            items = [self.budgeted(item) for item in items]
        return items[0] if count == 1 and self.chance(0.5) else items

    @staticmethod
    def budgeted(item: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"target": item} if isinstance(item, str) else dict(item)
        guard = out.pop("guard", out.pop("cond", None))
        out["guard"] = (
            _BUDGET_GUARD
            if guard is None
            else {
                "type": "and",
                "guards": [_BUDGET_GUARD, guard],
            }
        )
        actions = out.get("actions", [])
        out["actions"] = [_BUDGET_ACTION, *(actions if isinstance(actions, list) else [actions])]
        return out

    def eventless(self, source: _Node, root: _Node, *, forced: bool = False) -> list[Any]:
        """``always`` transitions; in a parallel region each also leaves an ordered trace.

        The trace (a task named after the state) makes the order in which regions'
        eventless transitions run visible (precise point 13: states entered during
        the macrostep come after those already active).
        """
        items = []
        traced = forced or (_in_region(source) and self.chance(0.6))
        for _ in range(self.rng.randint(1, 2)):
            counter = {"expr": self.rng.choice(list(COUNTER_EXPRS))}
            guard: Any = counter
            if forced or (traced and self.chance(0.4)):
                # Enabled by the event itself: regions settled by an earlier macrostep
                # fire together in a later one, in the restored order (point 13).
                guard = {"type": "and", "guards": [counter, {"expr": 'event.type == "A"'}]}
            elif self.chance(0.4):
                guard = {"type": "and", "guards": [counter, self.guard(1)]}
            actions = [{"type": "assign", "path": "t", "value": {"$expr": "context.t + 1"}}]
            if self.chance(0.4):
                actions.append(self.action())
            if traced:
                trace = {"type": "LOG", "name": f"always-{source.state_id}"}
                actions.append({"type": "createTask", "task": trace})
            item: dict[str, Any] = {"guard": guard, "actions": actions}
            targets = self.targets(source, root)
            if targets and self.chance(0.6):
                item["target"] = self.rng.choice(targets)
            items.append(item)
        return items

    def events_of(self, source: _Node) -> list[str]:
        pool = [*EXTERNAL_EVENTS, *RAISED_EVENTS]
        chosen = self.rng.sample(pool, self.rng.randint(1, 3))
        if self.chance(0.12):
            chosen.insert(self.rng.randint(0, len(chosen)), "*")
        if self.chance(0.15):
            chosen.insert(self.rng.randint(0, len(chosen)), "order.*")
        if self.chance(0.05) and source.children:
            child = self.rng.choice(source.children)
            if child.kind in ("compound", "parallel"):
                chosen.append(f"xstate.done.state.{child.state_id}")
        return chosen

    # --- state nodes -----------------------------------------------------------

    def state_spec(self, node: _Node, root: _Node) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        is_root = node.parent is None
        explicit = node.kind in ("final", "parallel") or self.chance(0.15)
        if explicit and (not is_root or node.kind == "parallel"):
            spec["type"] = node.kind
        if node.custom_id:
            spec["id"] = node.custom_id
        if node.kind == "compound":
            spec["initial"] = node.children[0].key
        if node.children:
            spec["states"] = {child.key: self.state_spec(child, root) for child in node.children}
        if node.kind == "final":
            if node.parent is root and self.chance(0.5):
                spec["output"] = self.any_value()
            if self.chance(0.3):
                spec["entry"] = self.actions()
            if self.chance(0.2):
                spec["exit"] = self.actions()
            return spec
        p_on = {"atomic": 0.75, "compound": 0.4, "parallel": 0.3}[node.kind]
        if self.chance(p_on if not is_root else 0.3):
            spec["on"] = {
                event: self.transitions(
                    node,
                    root,
                    budget=event in RAISE_REACHABLE or event.startswith("xstate.done."),
                )
                for event in self.events_of(node)
            }
        if node.eventless:
            spec["always"] = self.eventless(node, root, forced=True)
        elif self.chance(0.4 if _in_region(node) else 0.12):
            spec["always"] = self.eventless(node, root)
        if self.chance(0.2 if not is_root else 0.05):
            delays = self.rng.sample(DELAYS, self.rng.randint(1, 2))
            if len({iso_duration_ms(d) for d in delays}) == len(delays):
                spec["after"] = {d: self.transitions(node, root) for d in delays}
        if self.chance(0.3):
            spec["entry"] = self.actions()
        if self.chance(0.25):
            spec["exit"] = self.actions()
        if self.chance(0.05):  # kept and ignored by both interpreters
            spec.update(tags=["t"], description="generated", meta={"k": [1]})
        if not is_root and self.can_complete(node) and self.chance(0.6):
            spec["onDone"] = self.transitions(node, root, budget=True)
        return spec

    @staticmethod
    def can_complete(node: _Node) -> bool:
        if node.kind == "compound":
            return any(child.kind == "final" for child in node.children)
        if node.kind == "parallel":
            return all(_Generator.can_complete(child) for child in node.children)
        return False

    # --- the case --------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        root = self.structure()
        body = self.state_spec(root, root)
        spec: dict[str, Any] = {"id": MACHINE_ID}
        if root.kind == "compound":
            spec["initial"] = body.pop("initial")
        spec.update(body)
        spec["context"] = {key: _copy(value) for key, value in BASE_CONTEXT.items()}
        guards: dict[str, Any] = {name: NAMED_GUARDS[name] for name in self.guard_names}
        guards.update({name: PARAM_GUARDS[name][0] for name in self.param_guard_names})
        if guards:
            spec["guards"] = guards
        if self.action_names:
            spec["actions"] = {name: NAMED_ACTIONS[name] for name in self.action_names}
        return spec

    def instance_input(self) -> dict[str, Any] | None:
        return self.rng.choice([None, None, {"n": 2}, {"s": "hey", "f": True}, {"k": 1}])

    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for _ in range(self.rng.randint(1, 8)):
            roll = self.rng.random()
            if roll < 0.2:
                events.append({"$timer": self.rng.randint(0, 3)})
                continue
            if roll < 0.75:
                event_type = self.rng.choice(EXTERNAL_EVENTS)
            elif roll < 0.9:
                event_type = self.rng.choice(RAISED_EVENTS)
            else:
                event_type = self.rng.choice(UNKNOWN_EVENTS)
            payload = self.rng.choice([{}, {}, {"x": self.rng.randint(0, 3)}, {"x": 1, "y": "z"}])
            events.append({"type": event_type, "payload": payload})
        return events


def _in_region(node: _Node) -> bool:
    """Whether ``node`` lies inside a region of a parallel state."""
    parent = node.parent
    while parent is not None:
        if parent.kind == "parallel":
            return True
        parent = parent.parent
    return False


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def generate_case(seed: int) -> GeneratedCase:
    """The case for ``seed``; the same seed always gives the same case."""
    gen = _Generator(seed)
    spec = gen.spec()
    return GeneratedCase(seed=seed, spec=spec, input=gen.instance_input(), events=gen.events())

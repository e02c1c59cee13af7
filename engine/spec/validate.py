"""Upload-time validation of a workflow spec: every problem, each with its JSON path.

Validation runs in two passes over the same raw JSON and reports both together:

1. **Structure**, by the pydantic models in :mod:`~statefleet.engine.spec.models`.
   Pydantic's error locations describe the *normalised* spec (a lone transition
   becomes ``[0]``, a guard union adds a tag such as ``ref``), so each location
   is re-walked against the raw JSON to name only keys and indexes the author
   wrote, and its message is rewritten as a plain sentence.
2. **Semantics**, by a tolerant walk over the raw JSON (so it runs even when the
   model could not be built): state tree rules, ids, targets, guard and action
   references, CEL compilation, ``$expr`` placement, delays and instants.

Decisions where the contract is silent:

* ``params`` of named guards and actions are literal JSON; an ``$expr`` object
  inside them is rejected rather than silently passed on as data, because the
  author certainly meant it to be evaluated.
* A custom state ``id`` may not contain ``.`` (``#a.b`` would read as child
  ``b`` of id ``a``), nor repeat another node's custom or default id.
* A task may not give both ``runAt`` and ``delay``; a literal ``timeout`` must
  be positive; a literal ``idempotencyKey`` must be a string.
* ``guards`` may not be named ``and``/``or``/``not``, and ``actions`` may not
  take a built-in action's name: those names already mean something.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from statefleet.engine.cel import CelCompileError, compile_expr
from statefleet.engine.jsonkind import json_kind
from statefleet.engine.spec.durations import parse_delay_ms, parse_instant
from statefleet.engine.spec.errors import SpecError, SpecValidationError
from statefleet.engine.spec.identifiers import (
    DEFINITION_ID,
    EVENT_TYPE,
    IDEMPOTENCY_KEY,
    TASK_NAME,
    IdentifierRule,
)
from statefleet.engine.spec.models import BUILTIN_ACTIONS, LOGIC_GUARDS, WorkflowSpec
from statefleet.engine.spec.targets import StateIndex, StatePath, name_list

__all__ = ["format_path", "validate_spec"]

Segment = str | int
Loc = tuple[Segment, ...]
_Problem = tuple[Loc, str]

EXPR_KEY: Final = "$expr"
_BUILTINS_TEXT: Final = ", ".join(sorted(BUILTIN_ACTIONS))
_STATE_TYPES: Final = frozenset({"atomic", "compound", "parallel", "final"})
_FINAL_FORBIDDEN: Final = ("states", "initial", "on", "always", "after", "onDone")
_PLAIN_KEY: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*", re.ASCII)
_INTEGER_LIKE: Final = re.compile(r"\d+", re.ASCII)
_CEL_POSITION: Final = re.compile(r"<input>:(\d+):(\d+):\s*")
_NEVER: Final = 1 << 62  # sort position of a key the author did not write

# Our discriminator tags, which pydantic inserts into ``loc``. Its own union
# labels (``int``, ``str``, ``function-before[...]``) need no list: ``_locate``
# skips any segment that is not a key of the raw object it stands on.
_UNION_TAGS: Final = frozenset({"ref", "expr", "logic", "not", "named", *BUILTIN_ACTIONS})

_TYPE_NOUNS: Final = {
    "string_type": "a string",
    "string_sub_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "an object",
    "list_type": "a list",
    "tuple_type": "a list",
    "model_type": "an object",
    "model_attributes_type": "an object",
}
_MODEL_NOUNS: Final = {
    "Transition": "a transition (a target string or an object)",
    "StateNodeSpec": "a state node object",
    "NamedGuard": "a CEL string or an object with `expr`",
}
_UNSUPPORTED_KEYS: Final = {
    "invoke": "invoked actors are not supported; use a `createTask` action",
    "history": "history states are not supported",
    "delays": "write delays inline as `after` keys",
    "params": "only named guards and actions take `params`",
}


def validate_spec(raw: Any) -> WorkflowSpec:
    """Validates spec JSON against contract v1 and returns the frozen model.

    Args:
        raw: the decoded JSON of a workflow definition's ``spec``.

    Returns:
        The normalised, immutable :class:`WorkflowSpec`.

    Raises:
        SpecValidationError: listing every problem found (structural and
            semantic), in document order, each with its JSON path.
    """
    if not isinstance(raw, dict):
        raise SpecValidationError(
            [SpecError("", f"a workflow spec must be a JSON object, not {_kind(raw)}")]
        )
    problems: list[_Problem] = []
    model: WorkflowSpec | None = None
    try:
        model = WorkflowSpec.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_structural_problems(raw, exc.errors(include_url=False)))
    problems.extend(_Checker(raw).run())
    if problems or model is None:
        raise SpecValidationError(_sorted_errors(raw, problems))
    return model


def format_path(loc: Iterable[Segment]) -> str:
    """Writes a location as ``states.review.on.APPROVE[1].guard``.

    Keys that are not plain identifiers (``order.*``, ``5000``, ``a b``) are
    written as quoted subscripts (``on["order.*"]``) so the path stays
    unambiguous; ``""`` is the root.
    """
    out: list[str] = []
    for segment in loc:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        elif _PLAIN_KEY.fullmatch(segment):
            out.append(f".{segment}" if out else segment)
        else:
            out.append(f"[{json.dumps(segment, ensure_ascii=False)}]")
    return "".join(out)


# --- ordering ---------------------------------------------------------------


def _sorted_errors(raw: Any, problems: list[_Problem]) -> list[SpecError]:
    positions: dict[int, dict[str, int]] = {}  # id(dict) -> key -> index, built once per dict

    def order_key(loc: Loc) -> tuple[int, ...]:
        key: list[int] = []
        node = raw
        for segment in loc:
            if isinstance(node, dict) and segment in node:
                index = positions.get(id(node))
                if index is None:
                    index = positions[id(node)] = {k: i for i, k in enumerate(node)}
                key.append(index[str(segment)])
                node = node[segment]
            elif isinstance(node, list) and isinstance(segment, int) and segment < len(node):
                key.append(segment)
                node = node[segment]
            else:
                key.append(_NEVER)
                node = None
        return tuple(key)

    unique = list(dict.fromkeys(problems))
    unique.sort(key=lambda problem: order_key(problem[0]))
    return [SpecError(format_path(loc), message) for loc, message in unique]


# --- structure: pydantic errors re-anchored on the raw JSON -----------------


def _locate(raw: Any, loc: tuple[int | str, ...]) -> tuple[Loc, str | None]:
    """Maps a pydantic ``loc`` onto keys the author wrote.

    Returns the path and, when ``loc`` ends at a key absent from the raw JSON
    (a missing field), that key's name.
    """
    out: list[Segment] = []
    node = raw
    last = len(loc) - 1
    for position, part in enumerate(loc):
        if isinstance(node, dict):
            if isinstance(part, int):
                continue  # an index pydantic invented for a shorthand
            is_tag = part in _UNION_TAGS and node.get("type") == part
            if part in node and not is_tag:
                out.append(part)
                node = node[part]
            elif part == "guard" and "cond" in node:
                out.append("cond")
                node = node["cond"]
            elif position == last and not is_tag:
                return tuple(out), part
        elif isinstance(node, list):
            if isinstance(part, int) and 0 <= part < len(node):
                out.append(part)
                node = node[part]
        else:
            break  # a scalar shorthand: what the author wrote is what is wrong
    return tuple(out), None


def _structural_problems(raw: Any, details: list[ErrorDetails]) -> list[_Problem]:
    problems: list[_Problem] = []
    type_errors: dict[Loc, list[ErrorDetails]] = {}
    for detail in details:
        loc, missing_key = _locate(raw, detail["loc"])
        kind = detail["type"]
        if kind == "missing":
            key = missing_key if missing_key is not None else detail["loc"][-1]
            problems.append((loc, f"missing required key '{key}'"))
        elif kind in _TYPE_NOUNS:
            type_errors.setdefault(loc, []).append(detail)
        else:
            problems.append((loc, _structural_message(loc, detail)))
    for loc, group in type_errors.items():
        problems.append((loc, _type_message(loc, group)))
    return problems


def _subject(loc: Loc) -> str:
    if not loc:
        return "the spec"
    last = loc[-1]
    return f"`{last}`" if isinstance(last, str) else "this item"


def _type_message(loc: Loc, group: list[ErrorDetails]) -> str:
    nouns: list[str] = []
    for detail in group:
        ctx = detail.get("ctx") or {}
        noun = _MODEL_NOUNS.get(str(ctx.get("class_name")), _TYPE_NOUNS[detail["type"]])
        if noun not in nouns:
            nouns.append(noun)
    value = group[0]["input"]
    expected = " or ".join(nouns)
    if _is_expr_object(value):
        return f"{_subject(loc)} does not take `$expr`: it must be a literal ({expected})"
    return f"{_subject(loc)} must be {expected}, not {_kind(value)}"


def _structural_message(loc: Loc, detail: ErrorDetails) -> str:
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    value = detail["input"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        why = _UNSUPPORTED_KEYS.get(key, "not part of spec v1")
        return f"unknown key '{key}': {why}"
    if kind == "value_error":
        return str(detail["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        if loc == ("type",):
            return (
                f"the root's `type` must be 'compound' or 'parallel', not {_show(value)}: "
                "a workflow always has child states"
            )
        return f"{_show(value)} is not allowed here; expected {ctx.get('expected')}"
    if kind == "greater_than_equal":
        return f"{_subject(loc)} must be at least {ctx.get('ge')}, not {_show(value)}"
    if kind == "greater_than":
        bound = ctx.get("gt")
        shown = f"{bound:g}" if isinstance(bound, float) else bound  # 0, not 0.0
        return f"{_subject(loc)} must be greater than {shown}, not {_show(value)}"
    if kind == "finite_number":
        return f"{_subject(loc)} must be a finite number"
    if kind == "string_too_short":
        return f"{_subject(loc)} must be a non-empty string"
    return f"{_subject(loc)}: {detail['msg']}"


# --- semantics: a tolerant walk over the raw JSON ---------------------------


class _Checker:
    """Collects semantic problems; skips whatever the structural pass rejects."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.problems: list[_Problem] = []
        self.index = StateIndex.from_json(raw)
        guards = raw.get("guards")
        actions = raw.get("actions")
        self.guard_names: tuple[str, ...] = tuple(guards) if isinstance(guards, dict) else ()
        self.action_names: tuple[str, ...] = tuple(actions) if isinstance(actions, dict) else ()
        # Ids XState registers for nodes without a custom id (their default ids).
        self.effective_ids = {
            state_id: path
            for path, state_id in self.index.ids.items()
            if state_id == self.index.default_id(path)
        }
        self.custom_ids: dict[str, Loc] = {}
        self.cel_cache: dict[tuple[str, bool], str | None] = {}

    def error(self, loc: Loc, message: str) -> None:
        self.problems.append((loc, message))

    def check_identifier(self, rule: IdentifierRule, value: Any, loc: Loc) -> None:
        """Ids, event types, task names and keys follow ``identifiers`` (what the API takes).

        An empty string is left to the structural pass, which already names it.
        """
        problem = rule.problem(value) if value != "" else None
        if problem is not None:
            self.error(loc, problem)

    def run(self) -> list[_Problem]:
        raw = self.raw
        self.check_identifier(DEFINITION_ID, raw.get("id"), ("id",))
        if "states" not in raw:
            self.error((), "missing required key 'states': a workflow needs at least one state")
        elif isinstance(raw["states"], dict) and not raw["states"]:
            self.error(("states",), "a workflow needs at least one state under `states`")
        guards = raw.get("guards")
        if isinstance(guards, dict):
            for name, guard in guards.items():
                self.check_named_guard(name, guard)
        actions = raw.get("actions")
        if isinstance(actions, dict):
            for name, action in actions.items():
                if name in BUILTIN_ACTIONS:
                    self.error(
                        ("actions", name),
                        f"'{name}' is a built-in action type and cannot be redefined; "
                        "choose another name",
                    )
                self.check_action(action, ("actions", name), definition=True)
        self.check_node(raw, (), ())
        return self.problems

    # states -------------------------------------------------------------

    def check_node(self, node: Any, loc: Loc, path: StatePath) -> None:
        if not isinstance(node, dict) or node.get("type") == "history":
            return  # the model reports both
        is_root = not path
        raw_states = node.get("states")
        states: dict[str, Any] = raw_states if isinstance(raw_states, dict) else {}
        declared = node.get("type")
        kind = declared if declared in _STATE_TYPES else ("compound" if states else "atomic")
        if is_root and kind not in ("compound", "parallel"):
            kind = "compound"  # the model reports the bad root type

        if not is_root:
            self.check_custom_id(node, loc, path)
        self.check_shape(node, loc, path, kind, declared, states)

        for key, child in states.items():
            self.check_state_key(key, (*loc, "states", key))
            self.check_node(child, (*loc, "states", key), (*path, key))

        on = node.get("on")
        if isinstance(on, dict):
            for event, transitions in on.items():
                self.check_event_key(event, (*loc, "on", event))
                self.check_transitions(transitions, (*loc, "on", event), path)
        if "always" in node:
            self.check_transitions(node["always"], (*loc, "always"), path)
        after = node.get("after")
        if isinstance(after, dict):
            self.check_after(after, (*loc, "after"), path)
        if "onDone" in node:
            self.check_transitions(node["onDone"], (*loc, "onDone"), path)
        for key in ("entry", "exit"):
            if key in node:
                self.check_actions(node[key], (*loc, key))

    def check_shape(
        self,
        node: dict[str, Any],
        loc: Loc,
        path: StatePath,
        kind: str,
        declared: Any,
        states: dict[str, Any],
    ) -> None:
        is_root = not path
        children = name_list(states)
        if kind == "final":
            for key in _FINAL_FORBIDDEN:
                if key in node:
                    self.error(
                        (*loc, key),
                        f"a final state cannot have `{key}`: reaching it completes its "
                        "parent, so it has no children or transitions of its own",
                    )
        elif declared == "atomic" and "states" in node:
            self.error((*loc, "states"), "an atomic state cannot have child `states`")
        if not is_root and kind in ("compound", "parallel") and not states:
            self.error(loc, f"a {kind} state needs at least one child state under `states`")
        if "initial" in node:
            initial = node["initial"]
            if kind == "parallel":
                self.error(
                    (*loc, "initial"),
                    "a parallel state takes no `initial`: all its child regions are entered",
                )
            elif kind == "atomic":
                self.error(
                    (*loc, "initial"), "an atomic state takes no `initial`: it has no children"
                )
            elif (
                kind == "compound"
                and isinstance(initial, str)
                and initial
                and states
                and initial not in states
            ):
                self.error(
                    (*loc, "initial"),
                    f"initial state '{initial}' is not a child of this state; "
                    f"its children are: {children}",
                )
        elif kind == "compound" and states:
            where = "the root" if is_root else "a compound state"
            unless = " (unless the root's `type` is 'parallel')" if is_root else ""
            self.error(
                loc,
                f"{where} needs `initial` naming one of its children{unless}: {children}",
            )
        if "onDone" in node and kind != "final":
            if is_root:
                self.error(
                    (*loc, "onDone"),
                    "the root takes no `onDone`: reaching a root-level final state "
                    "completes the workflow",
                )
            elif kind not in ("compound", "parallel"):
                self.error(
                    (*loc, "onDone"),
                    "`onDone` is only for compound and parallel states: it fires when "
                    "their children are done",
                )
        if "output" in node:
            if kind == "final" and len(path) == 1:
                self.check_value(node["output"], (*loc, "output"))
            else:
                self.error(
                    (*loc, "output"),
                    "`output` is only allowed on final states that are direct children of "
                    "the root: it becomes the workflow's output when that state is reached",
                )

    def check_custom_id(self, node: dict[str, Any], loc: Loc, path: StatePath) -> None:
        custom = node.get("id")
        if not isinstance(custom, str):
            return
        id_loc = (*loc, "id")
        if not custom:
            self.error(id_loc, "a custom `id` must be a non-empty string")
            return
        if "." in custom:
            self.error(
                id_loc,
                f"custom id '{custom}' may not contain '.': the target '#{custom}' "
                "would be read as an id followed by child states",
            )
        owner = self.effective_ids.get(custom)
        if owner is not None and owner != path:
            where = format_path(_state_loc(owner)) or "the root"
            self.error(id_loc, f"custom id '{custom}' collides with the default id of {where}")
        elif custom in self.custom_ids:
            where = format_path(self.custom_ids[custom][:-1])
            self.error(id_loc, f"duplicate state id '{custom}': {where} already uses it")
        else:
            self.custom_ids[custom] = id_loc

    def check_state_key(self, key: str, loc: Loc) -> None:
        if not key:
            self.error(loc, "a state key must be a non-empty string")
        elif "." in key:
            self.error(
                loc, f"state key '{key}' may not contain '.': targets use '.' between state keys"
            )
        elif key.startswith("#"):
            self.error(loc, f"state key '{key}' may not start with '#': targets use '#' for ids")
        elif _INTEGER_LIKE.fullmatch(key):
            self.error(
                loc,
                f"state key '{key}' looks like an integer, which JavaScript would order "
                "before the other keys; document order must be the same in every language",
            )

    def check_event_key(self, event: str, loc: Loc) -> None:
        if not event:
            self.error(
                loc,
                "an event type cannot be empty; use `always` for eventless transitions",
            )
        elif _INTEGER_LIKE.fullmatch(event):
            self.error(
                loc,
                f"event type '{event}' looks like an integer, which JavaScript would order "
                "before the other keys; document order must be the same in every language",
            )
        elif "*" in event and event != "*":
            prefix = event[:-2]
            if not event.endswith(".*") or not prefix or "*" in prefix:
                self.error(
                    loc,
                    f"invalid wildcard '{event}': use '*' alone or one trailing '.*' "
                    "token, as in 'order.*'",
                )
            else:
                self.check_identifier(EVENT_TYPE, prefix, loc)
        elif event != "*":
            self.check_identifier(EVENT_TYPE, event, loc)

    def check_after(self, after: dict[str, Any], loc: Loc, path: StatePath) -> None:
        seen: dict[int, str] = {}
        for key, transitions in after.items():
            key_loc = (*loc, key)
            try:
                delay = parse_delay_ms(key)
            except ValueError as exc:
                self.error(key_loc, str(exc))
            else:
                if delay in seen:
                    self.error(
                        key_loc,
                        f"delay '{key}' is {delay} ms, the same as '{seen[delay]}'; one "
                        "state's `after` delays must differ, as they name its timer events",
                    )
                else:
                    seen[delay] = key
            self.check_transitions(transitions, key_loc, path)

    # transitions and guards ---------------------------------------------

    def check_transitions(self, raw: Any, loc: Loc, path: StatePath) -> None:
        for item, item_loc in _items(raw, loc):
            if isinstance(item, str):
                if item:
                    self.check_target(item, item_loc, path)
                continue
            if not isinstance(item, dict):
                continue
            target = item.get("target")
            if isinstance(target, str) and target:
                self.check_target(target, (*item_loc, "target"), path)
            elif isinstance(target, list):
                for i, each in enumerate(target):
                    if isinstance(each, str):
                        self.check_target(each, (*item_loc, "target", i), path)
            for key in ("guard", "cond"):
                if key in item:
                    self.check_guard(item[key], (*item_loc, key))
            if "actions" in item:
                self.check_actions(item["actions"], (*item_loc, "actions"))

    def check_target(self, target: str, loc: Loc, path: StatePath) -> None:
        try:
            self.index.resolve(path, target)
        except ValueError as exc:
            self.error(loc, str(exc))

    def check_named_guard(self, name: str, guard: Any) -> None:
        loc: Loc = ("guards", name)
        if name in LOGIC_GUARDS:
            self.error(loc, f"'{name}' is a logical guard type and cannot name a guard")
        if isinstance(guard, str):
            self.check_cel(guard, loc)
        elif isinstance(guard, dict) and isinstance(guard.get("expr"), str):
            self.check_cel(guard["expr"], (*loc, "expr"))

    def check_guard(self, guard: Any, loc: Loc) -> None:
        if isinstance(guard, str):
            if guard not in LOGIC_GUARDS:
                self.check_guard_name(guard, loc)
            return
        if not isinstance(guard, dict):
            return
        kind = guard.get("type")
        if "expr" in guard:
            if isinstance(guard["expr"], str):
                self.check_cel(guard["expr"], (*loc, "expr"))
        elif kind in ("and", "or"):
            members = guard.get("guards")
            if isinstance(members, list):
                if not members:
                    self.error(
                        (*loc, "guards"), f"an `{kind}` guard needs at least one guard in `guards`"
                    )
                for i, member in enumerate(members):
                    self.check_guard(member, (*loc, "guards", i))
        elif kind == "not":
            if "guard" in guard:
                self.check_guard(guard["guard"], (*loc, "guard"))
        elif isinstance(kind, str):
            self.check_guard_name(kind, (*loc, "type"))
            if "params" in guard:
                self.check_params(guard["params"], (*loc, "params"))

    def check_guard_name(self, name: str, loc: Loc) -> None:
        if name in self.guard_names:
            return
        if self.guard_names:
            known = f"defined guards: {name_list(sorted(self.guard_names))}"
        else:
            known = "no guards are defined under `guards`"
        self.error(loc, f"unknown guard '{name}'; {known}")

    # actions and values -------------------------------------------------

    def check_actions(self, raw: Any, loc: Loc) -> None:
        for item, item_loc in _items(raw, loc):
            self.check_action(item, item_loc)

    def check_action(self, action: Any, loc: Loc, *, definition: bool = False) -> None:
        if isinstance(action, str):
            if action not in BUILTIN_ACTIONS:
                self.check_action_name(action, loc, definition=definition)
            return
        if not isinstance(action, dict):
            return
        kind = action.get("type")
        if kind == "assign":
            self.check_assign(action, loc)
        elif kind == "createTask":
            task = action.get("task")
            if isinstance(task, dict):
                self.check_task(task, (*loc, "task"))
        elif kind == "raise":
            event = action.get("event")
            if isinstance(event, dict) and event.get("type"):
                self.check_identifier(EVENT_TYPE, event["type"], (*loc, "event", "type"))
            if isinstance(event, dict) and "payload" in event:
                self.check_value(event["payload"], (*loc, "event", "payload"))
        elif kind == "cancelTask":
            if "idempotencyKey" in action:
                self.check_key_value(action["idempotencyKey"], (*loc, "idempotencyKey"))
            if action.get("name"):
                self.check_identifier(TASK_NAME, action["name"], (*loc, "name"))
        elif isinstance(kind, str):
            self.check_action_name(kind, (*loc, "type"), definition=definition)
            if "params" in action:
                self.check_params(action["params"], (*loc, "params"))

    def check_action_name(self, name: str, loc: Loc, *, definition: bool) -> None:
        if definition:
            self.error(
                loc,
                f"a named action must be a built-in action ({_BUILTINS_TEXT}), not a "
                f"reference to '{name}': named actions do not chain",
            )
        elif name not in self.action_names:
            self.error(
                loc,
                f"unknown action type '{name}': not a built-in action ({_BUILTINS_TEXT}) "
                "nor a named action under `actions`",
            )

    def check_assign(self, action: dict[str, Any], loc: Loc) -> None:
        path = action.get("path")
        if isinstance(path, str):
            self.check_context_path(path, (*loc, "path"))
        if "value" in action:
            self.check_value(action["value"], (*loc, "value"))
        assignments = action.get("assignments")
        if isinstance(assignments, dict):
            for key, value in assignments.items():
                self.check_context_path(key, (*loc, "assignments", key))
                self.check_value(value, (*loc, "assignments", key))

    def check_context_path(self, path: str, loc: Loc) -> None:
        if not path or "" in path.split("."):
            self.error(
                loc,
                f"invalid context path '{path}': use dotted keys with no empty "
                "segment, like 'order.total'",
            )

    def check_task(self, task: dict[str, Any], loc: Loc) -> None:
        if "input" in task:
            self.check_value(task["input"], (*loc, "input"))
        if task.get("runAt") is not None and task.get("delay") is not None:
            self.error(loc, "a task takes `runAt` or `delay`, not both")
        run_at = task.get("runAt")
        if _is_expr_object(run_at):
            self.check_value(run_at, (*loc, "runAt"))
        elif run_at is not None:
            try:
                parse_instant(run_at)
            except ValueError as exc:
                self.error((*loc, "runAt"), str(exc))
        delay = task.get("delay")
        if _is_expr_object(delay):
            self.check_value(delay, (*loc, "delay"))
        elif delay is not None:
            self.check_delay(delay, (*loc, "delay"))
        self.check_identifier(TASK_NAME, task.get("name"), (*loc, "name"))
        for key in ("completionEvent", "failureEvent"):
            if task.get(key) == "":
                self.error((*loc, key), f"`{key}` must be a non-empty event type")
            else:
                self.check_identifier(EVENT_TYPE, task.get(key), (*loc, key))
        if "idempotencyKey" in task:
            self.check_key_value(task["idempotencyKey"], (*loc, "idempotencyKey"))
        timeout = task.get("timeout")
        if _is_delay_literal(timeout) and self.check_delay(timeout, (*loc, "timeout")) == 0:
            self.error((*loc, "timeout"), "a task `timeout` must be positive, not 0")
        limits = task.get("limits")
        if isinstance(limits, dict) and isinstance(limits.get("key"), str) and limits["key"]:
            # The limit key sees the task's resolved input as `input` (its own CEL environment).
            self.check_cel(limits["key"], (*loc, "limits", "key"), with_input=True)
        retry = task.get("retry")
        backoff = retry.get("backoff") if isinstance(retry, dict) else None
        if isinstance(backoff, dict) and _is_delay_literal(backoff.get("delay")):
            self.check_delay(backoff["delay"], (*loc, "retry", "backoff", "delay"))

    def check_delay(self, value: Any, loc: Loc) -> int | None:
        try:
            return parse_delay_ms(value)
        except ValueError as exc:
            self.error(loc, str(exc))
            return None

    def check_key_value(self, value: Any, loc: Loc) -> None:
        if isinstance(value, dict):
            self.check_value(value, loc)
        elif value is not None and not isinstance(value, str):
            self.error(
                loc,
                f"an idempotency key must be a string or an `$expr` object, not {_kind(value)}",
            )
        else:
            self.check_identifier(IDEMPOTENCY_KEY, value, loc)

    def check_value(self, value: Any, loc: Loc) -> None:
        """Checks every ``$expr`` in a value; literal objects and lists are walked."""
        stack: list[tuple[Any, Loc]] = [(value, loc)]
        while stack:
            item, item_loc = stack.pop()
            if isinstance(item, dict):
                if _is_expr_object(item):
                    self.check_expr_object(item, item_loc)
                else:
                    stack.extend((v, (*item_loc, k)) for k, v in item.items())
            elif isinstance(item, list):
                stack.extend((v, (*item_loc, i)) for i, v in enumerate(item))

    def check_expr_object(self, item: dict[str, Any], loc: Loc) -> None:
        source = item[EXPR_KEY]
        if isinstance(source, str):
            self.check_cel(source, (*loc, EXPR_KEY))
        else:
            self.error((*loc, EXPR_KEY), f"`$expr` must be a CEL string, not {_kind(source)}")

    def check_params(self, params: Any, loc: Loc) -> None:
        stack: list[tuple[Any, Loc]] = [(params, loc)]
        while stack:
            item, item_loc = stack.pop()
            if isinstance(item, dict):
                if _is_expr_object(item):
                    self.error(
                        item_loc,
                        "`params` are literal JSON and `$expr` is not evaluated here; "
                        "use `params` inside the guard's or action's own expressions instead",
                    )
                    continue
                stack.extend((v, (*item_loc, k)) for k, v in item.items())
            elif isinstance(item, list):
                stack.extend((v, (*item_loc, i)) for i, v in enumerate(item))

    def check_cel(self, source: str, loc: Loc, *, with_input: bool = False) -> None:
        """Compiles ``source`` once per spec; ``with_input`` also declares ``input``."""
        cache_key = (source, with_input)
        if cache_key not in self.cel_cache:
            try:
                compile_expr(source, with_input=with_input)
            except CelCompileError as exc:
                self.cel_cache[cache_key] = _cel_message(str(exc))
            else:
                self.cel_cache[cache_key] = None
        message = self.cel_cache[cache_key]
        if message is not None:
            self.error(loc, message)


# --- helpers ----------------------------------------------------------------


def _items(raw: Any, loc: Loc) -> Iterable[tuple[Any, Loc]]:
    """A list's items with their indexes, or a shorthand single item at ``loc`` itself."""
    if isinstance(raw, list):
        return [(item, (*loc, i)) for i, item in enumerate(raw)]
    return [] if raw is None else [(raw, loc)]


def _state_loc(path: StatePath) -> Loc:
    loc: list[Segment] = []
    for key in path:
        loc.extend(("states", key))
    return tuple(loc)


def _is_delay_literal(value: Any) -> bool:
    """Whether the model accepted ``value`` as a literal delay (so its syntax is ours to check)."""
    return isinstance(value, int | str) and not isinstance(value, bool)


def _is_expr_object(value: Any) -> bool:
    """Precise point 12: only an object whose single key is ``$expr`` is an expression.

    An object with ``$expr`` beside other keys is an ordinary literal object,
    evaluated member by member, as XState passes it through.
    """
    return isinstance(value, Mapping) and len(value) == 1 and EXPR_KEY in value


def _cel_message(message: str) -> str:
    first = message.splitlines()[0] if message else "empty expression"
    first = first.replace(" (in container '')", "")
    match = _CEL_POSITION.match(first)
    if match is not None:
        line, column = match.groups()
        where = f"column {column}" if line == "1" else f"line {line}, column {column}"
        first = f"{first[match.end() :]} (at {where})"
    if first.startswith("a CEL expression"):
        return first
    return f"CEL expression does not compile: {first}"


def _kind(value: Any) -> str:
    # Spec authors think in lists, not arrays.
    kind = json_kind(value, article=True)
    return "a list" if kind == "an array" else kind


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)

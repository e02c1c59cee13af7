"""Translate a statefleet spec (contract v1) into an XState v5 machine config.

The output is JSON for ``xstate_runner.mjs``: the config and the
implementations, where every function is an object ``{"$js": "<source>"}``
that the runner evaluates with ``xs`` (the xstate module) and ``h`` (its
helpers) in scope. CEL texts become JavaScript through the reviewed table in
:mod:`expressions`, never through a CEL interpreter.

The translation reads the *raw* JSON spec and handles the contract's
shorthands itself instead of going through statefleet's pydantic models: the
oracle must not inherit a normalisation bug from the code under test.

Mapping (contract -> XState):

* guards: named -> ``implementations.guards``; inline ``{"expr"}`` -> an inline
  function guard; ``and``/``or``/``not`` -> ``xs.and``/``xs.or``/``xs.not``.
* ``assign`` -> ``xs.assign`` (an ``assignments`` action evaluates every value
  against the context before it, then applies them in key order);
  ``raise`` -> ``xs.raise`` with the payload resolved when it runs;
  ``createTask``/``cancelTask`` -> custom actions that the runner reports as
  effects, resolved from the context and event XState hands the action.
* ``after`` delays -> numeric XState delays (ISO-8601 durations in ms);
  XState schedules them as delayed raises, which the runner reports as
  ``scheduleTimer``/``cancelTimer``.
* instance output: XState's root ``output`` receives the root completion's
  done event, whose ``output`` is the root-level final state's resolved
  ``output``; without one the contract's output is the whole context.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from expressions import to_js

__all__ = ["Translation", "iso_duration_ms", "timer_events", "translate"]

_ISO_DURATION: Final = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_BUILTIN_ACTIONS: Final = frozenset({"assign", "createTask", "raise", "cancelTask"})
_FN: Final = "({context, event}, params)"


def iso_duration_ms(text: str | int) -> int:
    """Milliseconds of an integer, an integer string, or an ISO-8601 duration without Y/M."""
    if isinstance(text, int):
        return text
    if text.isdigit():
        return int(text)
    match = _ISO_DURATION.match(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"not a delay: {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    seconds = (
        parts["w"] * 7 * 86400
        + parts["d"] * 86400
        + parts["h"] * 3600
        + parts["m"] * 60
        + parts["s"]
    )
    return round(seconds * 1000)


def _as_list(raw: Any) -> list[Any]:
    if raw is None:
        return []
    return list(raw) if isinstance(raw, list) else [raw]


def _js(source: str) -> dict[str, str]:
    return {"$js": source}


@dataclass
class Translation:
    """An XState config and implementations, ready to send to the runner."""

    config: dict[str, Any]
    implementations: dict[str, dict[str, Any]]
    timers: list[str] = field(default_factory=list)

    def as_case(
        self, case_id: str, events: list[dict[str, Any]], max_iterations: int = 1000
    ) -> dict[str, Any]:
        """The runner's input for one case."""
        return {
            "id": case_id,
            "config": self.config,
            "implementations": self.implementations,
            "events": events,
            "timers": self.timers,
            "maxIterations": max_iterations,
        }


class _Translator:
    def __init__(self, spec: Mapping[str, Any], extra_js: Mapping[str, str] | None) -> None:
        self.spec = spec
        self.extra_js = dict(extra_js or {})
        self.guards: dict[str, Any] = {}
        self.actions: dict[str, Any] = {}
        self._effect_count = 0

    # --- values -------------------------------------------------------------

    def cel(self, source: str) -> str:
        return f"({to_js(source, self.extra_js)})"

    def value(self, raw: Any) -> str:
        """A JS expression (over ``context``, ``event``, ``params``) for a contract value."""
        if isinstance(raw, dict):
            if len(raw) == 1 and "$expr" in raw:
                return self.cel(raw["$expr"])
            items = ", ".join(f"{json.dumps(k)}: {self.value(v)}" for k, v in raw.items())
            return "({" + items + "})"
        if isinstance(raw, list):
            return "[" + ", ".join(self.value(v) for v in raw) + "]"
        return json.dumps(raw)

    def ms_value(self, raw: Any) -> str:
        """A delay value: literal ms or ISO duration converted here, ``$expr`` must give ms."""
        if isinstance(raw, str | int) and not isinstance(raw, bool):
            return str(iso_duration_ms(raw))
        return self.value(raw)

    # --- guards -------------------------------------------------------------

    def guard(self, raw: Any) -> str:
        """JS source of an XState guard."""
        if isinstance(raw, str):
            return json.dumps({"type": raw})
        if "expr" in raw:
            return f"(({{context, event}}) => {self.cel(raw['expr'])})"
        kind = raw["type"]
        if kind in ("and", "or"):
            inner = ", ".join(self.guard(g) for g in raw["guards"])
            return f"xs.{kind}([{inner}])"
        if kind == "not":
            return f"xs.not({self.guard(raw['guard'])})"
        ref: dict[str, Any] = {"type": kind}
        if raw.get("params") is not None:
            ref["params"] = raw["params"]
        return json.dumps(ref)

    def named_guards(self) -> None:
        for name, raw in (self.spec.get("guards") or {}).items():
            expr = raw if isinstance(raw, str) else raw["expr"]
            self.guards[name] = _js(f"({_FN} => {self.cel(expr)})")

    # --- actions ------------------------------------------------------------

    def action_impl(self, raw: Mapping[str, Any]) -> str:
        """JS source of an XState action implementing one builtin contract action."""
        kind = raw["type"]
        if kind == "assign":
            if raw.get("assignments") is not None:
                pairs = ", ".join(
                    f"[{json.dumps(path)}, {self.value(v)}]"
                    for path, v in raw["assignments"].items()
                )
                body = f"h.setPaths(context, [{pairs}])"
            else:
                body = f"h.setPath(context, {json.dumps(raw['path'])}, {self.value(raw['value'])})"
            return f"xs.assign({_FN} => {body})"
        if kind == "raise":
            event = raw["event"]
            payload = self.value(event.get("payload", {}))
            return f"xs.raise({_FN} => ({{type: {json.dumps(event['type'])}, payload: {payload}}}))"
        if kind == "createTask":
            return f"h.effect({_FN} => ({{type: 'createTask', task: {self.task(raw['task'])}}}))"
        if kind == "cancelTask":
            if raw.get("idempotencyKey") is not None:
                key = self.value(raw["idempotencyKey"])
                return f"h.effect({_FN} => ({{type: 'cancelTask', idempotencyKey: {key}}}))"
            name = json.dumps(raw["name"])
            return f"h.effect({_FN} => ({{type: 'cancelTask', name: {name}}}))"
        raise ValueError(f"not a builtin action: {kind!r}")

    def task(self, task: Mapping[str, Any]) -> str:
        """JS source of the effect's ``task`` object, field order as statefleet prints it."""
        fields = [
            f"type: {json.dumps(task['type'])}",
            f"name: {json.dumps(task['name'])}",
            f"input: {self.value(task.get('input', {}))}",
        ]
        if task.get("runAt") is not None:
            fields.append(f"runAt: {self.value(task['runAt'])}")
        if task.get("delay") is not None:
            fields.append(f"delay: {self.ms_value(task['delay'])}")
        if task.get("idempotencyKey") is not None:
            fields.append(f"idempotencyKey: {self.value(task['idempotencyKey'])}")
        for key in ("completionEvent", "failureEvent"):
            if task.get(key) is not None:
                fields.append(f"{key}: {json.dumps(task[key])}")
        if task.get("timeout") is not None:
            fields.append(f"timeout: {iso_duration_ms(task['timeout'])}")
        if task.get("policy") is not None:
            fields.append(f"policy: {json.dumps(task['policy'])}")
        if task.get("retry") is not None:
            fields.append(f"retry: {json.dumps(self.retry(task['retry']))}")
        return "{" + ", ".join(fields) + "}"

    @staticmethod
    def retry(raw: Mapping[str, Any]) -> dict[str, Any]:
        """The retry policy as statefleet reports it: defaults filled, delays in ms."""
        retry: dict[str, Any] = {"maxAttempts": raw.get("maxAttempts", 3)}
        if raw.get("backoff") is not None:
            backoff = raw["backoff"]
            retry["backoff"] = {
                "type": backoff.get("type", "exponential"),
                "delay": iso_duration_ms(backoff.get("delay", 1000)),
            }
        return retry

    def action(self, raw: Any) -> Any:
        """An entry of an XState action list for one contract action."""
        if isinstance(raw, str):
            return raw
        kind = raw["type"]
        if kind in ("assign", "raise"):
            return _js(self.action_impl(raw))
        if kind in ("createTask", "cancelTask"):
            # A custom action, so XState hands it the context of the moment it runs.
            self._effect_count += 1
            name = f"__sf_effect_{self._effect_count}"
            self.actions[name] = _js(self.action_impl(raw))
            return name
        ref: dict[str, Any] = {"type": kind}
        if raw.get("params") is not None:
            ref["params"] = raw["params"]
        return ref

    def actions_list(self, raw: Any) -> list[Any]:
        return [self.action(a) for a in _as_list(raw)]

    def named_actions(self) -> None:
        for name, raw in (self.spec.get("actions") or {}).items():
            definition = {"type": raw} if isinstance(raw, str) else raw
            if definition["type"] not in _BUILTIN_ACTIONS:
                raise ValueError(f"named action {name!r} must be a builtin action")
            self.actions[name] = _js(self.action_impl(definition))

    # --- transitions and states ----------------------------------------------

    def transition(self, raw: Any) -> Any:
        if isinstance(raw, str):
            return {"target": raw}
        out: dict[str, Any] = {}
        if raw.get("target") is not None:
            out["target"] = raw["target"]
        guard = raw.get("guard", raw.get("cond"))
        if guard is not None:
            out["guard"] = _js(self.guard(guard))
        if "actions" in raw:
            out["actions"] = self.actions_list(raw["actions"])
        if raw.get("reenter"):
            out["reenter"] = True
        return out

    def transitions(self, raw: Any) -> list[Any]:
        return [self.transition(t) for t in _as_list(raw)]

    def state(self, raw: Mapping[str, Any], *, is_root: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("id", "type", "initial"):
            if raw.get(key) is not None:
                out[key] = raw[key]
        if raw.get("states") is not None:
            out["states"] = {k: self.state(v) for k, v in raw["states"].items()}
        if raw.get("on"):
            out["on"] = {event: self.transitions(t) for event, t in raw["on"].items()}
        if raw.get("always") is not None:
            out["always"] = self.transitions(raw["always"])
        if raw.get("after"):
            out["after"] = {
                str(iso_duration_ms(delay)): self.transitions(t)
                for delay, t in raw["after"].items()
            }
        for key in ("entry", "exit"):
            if raw.get(key) is not None:
                out[key] = self.actions_list(raw[key])
        if raw.get("onDone") is not None:
            out["onDone"] = self.transitions(raw["onDone"])
        if "output" in raw and not is_root:
            out["output"] = _js(f"(({{context, event}}) => {self.value(raw['output'])})")
        return out


def translate(
    spec: Mapping[str, Any],
    instance_input: Mapping[str, Any] | None = None,
    extra_js: Mapping[str, str] | None = None,
) -> Translation:
    """Translates a raw contract-v1 spec (plus the instance input) for the runner.

    Args:
        spec: the workflow spec as JSON data.
        instance_input: merged shallowly over the spec's ``context``.
        extra_js: CEL -> JS twins for expressions outside the shared library
            (a conformance case's own reviewed pairs).

    Raises:
        KeyError: a CEL expression has no JavaScript twin.
    """
    translator = _Translator(spec, extra_js)
    translator.named_guards()
    translator.named_actions()
    config = translator.state(spec, is_root=True)
    config["id"] = spec["id"]
    config["context"] = {**(spec.get("context") or {}), **(instance_input or {})}
    # The contract's instance output: the root-level final state's own output, or the
    # whole context. XState hands root `output` the done event of the root completion.
    config["output"] = _js(
        "(({context, event}) => (event.output !== undefined ? event.output : context))"
    )
    implementations = {"guards": translator.guards, "actions": translator.actions}
    return Translation(config, implementations, timers=list(timer_events(spec)))


def timer_events(spec: Mapping[str, Any]) -> Iterator[str]:
    """Every ``after`` timer event type of the spec, in document order."""

    def walk(node: Mapping[str, Any], path: str) -> Iterator[str]:
        state_id = node.get("id") or path
        for delay in node.get("after") or {}:
            yield f"xstate.after.{iso_duration_ms(delay)}.{state_id}"
        for key, child in (node.get("states") or {}).items():
            yield from walk(child, f"{path}.{key}")

    yield from walk(spec, spec["id"])

"""The ``statefleet`` command line: check, run and draw workflow specs locally.

One click group, ``statefleet``: the commands that work on a spec file alone
(``validate``, ``simulate``, ``graph``) and ``migrate`` are defined here, the others
in modules of :mod:`statefleet.commands`, each registered below in one place. A
user's mistake (an unreadable file, bad JSON, an invalid spec, a step that fails)
exits 1 with a message on stderr and never a traceback; click's own usage errors
exit 2. Machine-readable output goes to stdout only.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import orjson

from statefleet import __version__
from statefleet.commands import api as api_commands
from statefleet.commands import config_cmd as config_commands
from statefleet.commands import demo as demo_commands
from statefleet.commands import schedules as schedule_commands
from statefleet.commands import tenants as tenant_commands
from statefleet.commands import up as up_commands
from statefleet.commands import worker as worker_commands
from statefleet.commands.client_cmds import register as register_client_commands
from statefleet.commands.upgrade import fetch_history
from statefleet.commands.upgrade import upgrade as upgrade_command
from statefleet.engine.graph import to_mermaid
from statefleet.engine.interpreter import Machine, Step, load_machine, make_event
from statefleet.engine.record import record
from statefleet.engine.spec import SpecError, SpecValidationError, WorkflowSpec, validate_spec
from statefleet.engine.spec.limits import SpecLimits, check_limits

__all__ = ["main", "statefleet"]

#: The event XState reports for the initial state; simulate's step 0 carries it.
INIT_EVENT = "xstate.init"
EVENT_KEYS = frozenset({"type", "payload"})


class CliError(click.ClickException):
    """A user-facing failure: click prints ``Error: <message>`` to stderr and exits 1."""


class InvalidSpec(Exception):
    """The spec file was read but failed validation; ``errors`` name JSON paths."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = tuple(errors)


@record
class LoadedSpec:
    """A spec as commands use it: the model to describe and draw, the machine to run."""

    spec: WorkflowSpec
    machine: Machine

    @property
    def state_count(self) -> int:
        """Every state node below the root, at any depth."""
        stack = list((self.spec.states or {}).values())
        count = 0
        while stack:
            node = stack.pop()
            count += 1
            stack.extend((node.states or {}).values())
        return count


# --- reading files ----------------------------------------------------------


def _read_bytes(path: str, what: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _parse_json(data: bytes | str, source: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CliError(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def _load_spec(path: str, limits: SpecLimits | None = None) -> LoadedSpec:
    """Reads, validates and compiles a spec.

    ``limits``: also check the spec's size first, as a deploy does (``validate``
    answers "would this deploy?"; ``simulate`` and ``graph`` run any size).

    Raises:
        CliError: the file cannot be read or is not JSON.
        InvalidSpec: the JSON is not a valid spec, or it is over a limit.
    """
    raw = _parse_json(_read_bytes(path, "spec"), "stdin" if path == "-" else path)
    over = check_limits(raw, limits) if limits is not None else []
    if over:
        raise InvalidSpec(tuple(over))
    try:
        spec = validate_spec(raw)
        machine = load_machine(spec)
    except SpecValidationError as exc:
        raise InvalidSpec(exc.errors) from None
    return LoadedSpec(spec, machine)


def _error_line(error: SpecError) -> str:
    # A message may span lines; indent the continuation lines so that every
    # error still starts at the left margin with its path.
    return str(error).replace("\n", "\n  ")


def _load_spec_or_exit(path: str) -> LoadedSpec:
    try:
        return _load_spec(path)
    except InvalidSpec as exc:
        for error in exc.errors:
            click.echo(_error_line(error), err=True)
        raise SystemExit(1) from None


def _write_json_line(record: Mapping[str, Any]) -> None:
    stream = sys.stdout.buffer
    stream.write(orjson.dumps(record) + b"\n")
    stream.flush()


# --- the group --------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "--version", prog_name="statefleet", message="%(prog)s %(version)s"
)
def statefleet() -> None:
    """Long-running, auditable workflows as XState-style JSON statecharts."""


# --- validate ---------------------------------------------------------------


def _deploy_limits() -> SpecLimits:
    """The limits a deploy applies by default (``STATEFLEET_SPEC_MAX_*``; tenants may differ)."""
    from statefleet.config import ConfigError, Settings

    try:
        return Settings.load().spec_limits()
    except ConfigError as exc:
        raise CliError(str(exc)) from None


@statefleet.command()
@click.argument("spec_path", metavar="SPEC.json")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout."
)
def validate(spec_path: str, as_json: bool) -> None:
    """Check a workflow spec against the v1 contract and the deploy limits.

    Prints every problem as `<path>: <message>`, the path being the JSON path
    in the spec, and exits 1 when there is any. The size limits are the
    server's defaults (STATEFLEET_SPEC_MAX_*); a tenant's own may differ.
    """
    errors: tuple[SpecError, ...]
    try:
        loaded = _load_spec(spec_path, _deploy_limits())
    except InvalidSpec as exc:
        errors = exc.errors
    except CliError as exc:
        if not as_json:
            raise
        errors = (SpecError("", exc.format_message()),)
    else:
        if as_json:
            _write_json_line({"ok": True, "id": loaded.spec.id, "states": loaded.state_count})
        else:
            click.echo(f"ok: {loaded.spec.id} ({loaded.state_count} states)")
        return
    if as_json:
        listed = [{"path": error.path, "message": error.message} for error in errors]
        _write_json_line({"ok": False, "errors": listed})
    else:
        for error in errors:
            click.echo(_error_line(error), err=True)
    raise SystemExit(1)


# --- simulate ---------------------------------------------------------------


def _parse_event(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CliError(f'{where}: an event is a JSON object {{"type": ..., "payload": {{...}}}}')
    unknown = sorted(set(data) - EVENT_KEYS)
    if unknown:
        raise CliError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            'an event has only "type" and "payload"'
        )
    event_type = data.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise CliError(f'{where}: "type" must be a non-empty string')
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise CliError(f'{where}: "payload" must be a JSON object')
    return make_event(event_type, payload)


def _read_events(path: str) -> Iterator[dict[str, Any]]:
    """Events of a JSON Lines file; blank lines and ``#`` comments are skipped."""
    source = "stdin" if path == "-" else path
    try:
        text = _read_bytes(path, "events file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{source}: not UTF-8 text ({exc.reason})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}, line {number}"
        try:
            data = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise CliError(f"{where}: invalid JSON at column {exc.colno}: {exc.msg}") from None
        yield _parse_event(data, where)


def _parse_input(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    value = _parse_json(text, "--input")
    if not isinstance(value, dict):
        raise CliError(f"--input must be a JSON object, not {type(value).__name__}")
    return value


def _step_record(number: int, event: Mapping[str, Any], step: Step) -> dict[str, Any]:
    snapshot = step.snapshot
    record: dict[str, Any] = {
        "step": number,
        "event": dict(event),
        "value": snapshot.value,
        "context": snapshot.context,
        "status": snapshot.status,
    }
    if snapshot.status == "done":
        record["output"] = snapshot.output
    if snapshot.status == "error":
        record["error"] = snapshot.error
    record["effects"] = step.effects_as_dicts()
    record["handled"] = step.handled
    return record


def _run(
    machine: Machine,
    instance_input: dict[str, Any],
    events: Iterable[Any],
    recorded: Sequence[tuple[int, Any]] | None = None,
) -> int:
    """Prints one record per step; returns the exit code (1 after a failed step).

    With ``recorded`` (``--history``: each event's audit seq and the state the live
    instance reached), each record also carries ``seq``, ``recorded`` and ``matches``.
    """
    step = machine.initial_state(instance_input)
    # The contract: internal events carry an empty payload; the input shows in the context.
    _write_json_line(_step_record(0, make_event(INIT_EVENT), step))
    number = 0
    pending = iter(events)
    while step.status != "error":
        event = next(pending, None)
        if event is None:
            return 0
        number += 1
        step = machine.transition(step.snapshot, event)
        record = _step_record(number, event, step)
        if recorded is not None and number <= len(recorded):
            seq, state = recorded[number - 1]
            record.update(seq=seq, recorded=state, matches=state == step.snapshot.value)
        _write_json_line(record)
    click.echo(f"Error: step {number} failed: {step.error}", err=True)
    return 1


@statefleet.command()
@click.argument("spec_path", metavar="SPEC.json")
@click.option(
    "--events",
    "events_path",
    metavar="EVENTS.jsonl|-",
    help='JSON Lines file of events {"type", "payload"?}; "-" reads stdin.',
)
@click.option(
    "--event",
    "event_types",
    metavar="TYPE",
    multiple=True,
    help="An event without payload; repeatable, sent after the --events file.",
)
@click.option(
    "--input",
    "input_json",
    metavar="JSON",
    help="Instance input, a JSON object merged over context.",
)
@click.option(
    "--history",
    "history_id",
    metavar="ID",
    help="Replay a live instance's events (and input), fetched through the API.",
)
@click.option("--url", metavar="URL", help="With --history: the server, as for `statefleet get`.")
@click.option("--api-key", metavar="KEY", help="With --history: the tenant key.")
def simulate(
    spec_path: str,
    events_path: str | None,
    event_types: tuple[str, ...],
    input_json: str | None,
    history_id: str | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """Run a spec on a list of events and print every step as a JSON line.

    Step 0 is the initial state. Each line holds the event, the state value,
    context, status (and output once done), the effects the step produced, and
    whether any transition handled the event. A step that fails to evaluate is
    printed with its error and ends the run with exit code 1.

    With --history ID the input and events are the live instance's (its audit log,
    read through the API), and each line also holds the recorded state and whether the
    replay matches it: the offline view of an upgrade's `diverged` verdict.
    """
    if spec_path == "-" and events_path == "-":
        raise CliError("the spec and the events cannot both be read from stdin")
    loaded = _load_spec_or_exit(spec_path)
    if history_id is not None:
        if events_path is not None or event_types or input_json is not None:
            raise CliError("--history brings its own input and events")
        live = fetch_history(history_id, url, api_key)
        raise SystemExit(_run(loaded.machine, live.input, live.events, live.recorded))
    instance_input = _parse_input(input_json)
    # Read every event before the first step, so bad input prints no steps.
    events = list(_read_events(events_path)) if events_path is not None else []
    events.extend(_parse_event({"type": t}, f"--event {t!r}") for t in event_types)
    raise SystemExit(_run(loaded.machine, instance_input, events))


# --- graph ------------------------------------------------------------------


@statefleet.command()
@click.argument("spec_path", metavar="SPEC.json")
def graph(spec_path: str) -> None:
    """Print a spec as a Mermaid stateDiagram-v2 diagram.

    The output goes in a Markdown mermaid code block as it is. Transitions
    without a target (actions only) are not drawn.
    """
    loaded = _load_spec_or_exit(spec_path)
    click.echo(to_mermaid(loaded.spec), nl=False)


# --- migrate ----------------------------------------------------------------


@statefleet.command()
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    required=True,
    help="Postgres DSN (default: $DATABASE_URL).",
)
def migrate(database_url: str) -> None:
    """Apply pending schema migrations (idempotent; safe when several run at once)."""
    import asyncio

    from statefleet.engine.store import MigrationError
    from statefleet.engine.store import migrate as run_migrations

    try:
        applied = asyncio.run(run_migrations(database_url))
    except MigrationError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot reach the database: {exc}") from None
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("schema is up to date")


register_client_commands(statefleet)
statefleet.add_command(upgrade_command)
schedule_commands.register(statefleet)
tenant_commands.register(statefleet)
api_commands.register(statefleet)
up_commands.register(statefleet)
worker_commands.register(statefleet)
demo_commands.register(statefleet)
config_commands.register(statefleet)


# --- entry point ------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the CLI: the ``statefleet`` console script and ``python -m statefleet``."""
    statefleet.main(args=list(argv) if argv is not None else None, prog_name="statefleet")

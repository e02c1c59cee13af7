"""CLI commands that drive a statefleet server through :mod:`statefleet.client`.

``register(group)`` adds them to the ``statefleet`` group: ``deploy``,
``definitions ls|get``, ``start``,
``send``, ``get``, ``history``, ``ls``, ``cancel``, ``tasks ls|complete|fail|retry``
and ``batch [start] KEY INPUTS.jsonl`` / ``batch status ID...``.

Every command takes ``--url`` and ``--api-key``; left out, the client resolves them
(:func:`statefleet.client.resolve_connection`: ``$STATEFLEET_URL`` /
``$STATEFLEET_API_KEY``, else the server and key ``statefleet up`` keeps in
``$STATEFLEET_HOME/credentials.json``), so the CLI and the Python client always agree.
Every command that prints a resource takes ``--json``: one JSON object (camelCase, as
the API sends it) or, for lists, JSON Lines, so that output can be piped without
waiting for the last page. An API error prints ``error: <code>: <message>`` on stderr,
then each problem once and what to do next, and exits 1; so does an unreachable server.

Tests inject an ``httpx.BaseTransport`` as click's context object
(``CliRunner().invoke(statefleet, args, obj=transport)``); users never see it.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import orjson
from pydantic import BaseModel

from statefleet.client import (
    DEFAULT_URL,
    BatchProgress,
    Client,
    Instance,
    StartedBatch,
    StatefleetError,
    Task,
)
from statefleet.engine.record import record

__all__ = ["register"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: The CLI sends a 10,000-input batch in one request (the issue's "one call"); the
#: server's default body limit (10 MiB) leaves ~1 KiB per input at this size.
DEFAULT_CHUNK_SIZE = 10_000
#: Exit status after Ctrl-C, as shells report a SIGINT.
EXIT_INTERRUPTED = 130


class CliError(click.ClickException):
    """A user's mistake found before any request: ``Error: <message>``, exit 1."""


class ApiFailure(click.ClickException):
    """An API error or an unreachable server: ``error: <code>: <message>``, exit 1.

    With ``details`` (the problems of a refused spec or body), the first line counts
    them and each follows on its own line: the API's message repeats the first
    problem, which printed both ways would show twice. ``hint`` says what to do next.
    """

    def __init__(
        self, code: str, message: str, details: Sequence[str] = (), hint: str | None = None
    ) -> None:
        if details:
            message = f"{len(details)} problem{'s' if len(details) > 1 else ''}:"
        super().__init__(f"{code}: {message}")
        self.details = tuple(details)
        self.hint = hint

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)
        for line in self.details:
            click.echo(f"  {line}", err=True)
        if self.hint:
            click.echo(self.hint, err=True)


# --- plumbing ---------------------------------------------------------------


def _connection_options(command: F) -> F:
    # No click envvar or default: the client resolves both, the same way for everyone.
    command = click.option(
        "--api-key",
        metavar="KEY",
        help="Tenant API key [default: $STATEFLEET_API_KEY, else the key `statefleet up` "
        "keeps for its own server].",
    )(command)
    return click.option(
        "--url",
        metavar="URL",
        help="Server address, without /v1 [default: $STATEFLEET_URL, else the server "
        f"`statefleet up` runs on this machine, else {DEFAULT_URL}].",
    )(command)


def _json_option(command: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Machine output: JSON (JSON Lines for lists)."
    )(command)


def _limit_option(help: str) -> Callable[[F], F]:
    """``--limit N`` (default 50) for a listing; ``help`` says which come first."""
    return click.option(
        "--limit", type=click.IntRange(min=1), default=50, show_default=True, help=help
    )


def _first(items: Iterable[T], limit: int) -> list[T]:
    """The first ``limit`` of ``items`` (a lazily paged listing reads no further)."""
    return [item for _, item in zip(range(limit), items, strict=False)]


def _echo_json_lines(items: Iterable[Any]) -> None:
    """``--json`` for a list: one JSON object a line (JSON Lines)."""
    for item in items:
        _echo_json(item)


def _details(error: StatefleetError) -> list[str]:
    if not isinstance(error.details, list):
        return []
    lines = []
    for item in error.details:
        if isinstance(item, dict) and "message" in item:
            path = item.get("path") or "(root)"
            lines.append(f"{path}: {item['message']}")
        else:
            lines.append(str(item))
    return lines


@contextmanager
def _client(url: str | None, api_key: str | None) -> Iterator[Client]:
    """A client for one command; turns API and network errors into short exits."""
    transport = click.get_current_context().find_object(httpx.BaseTransport)
    try:
        with Client(url, api_key, transport=transport) as client:
            yield client
    except StatefleetError as error:
        raise ApiFailure(error.code, error.message, _details(error), error.hint) from None


def _parse_json(text: str, source: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{source}: invalid JSON: {exc.msg}") from None


def _json_object(text: str | None, option: str) -> dict[str, Any] | None:
    if text is None:
        return None
    value = _parse_json(text, option)
    if not isinstance(value, dict):
        raise CliError(f"{option} must be a JSON object, not {type(value).__name__}")
    return value


def _read_text(path: str, what: str) -> str:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        return data.decode("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _dump(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=False)
    return dict(value)


def _echo_json(value: Any) -> None:
    stream = sys.stdout.buffer
    stream.write(orjson.dumps(_dump(value)) + b"\n")
    stream.flush()


def _compact(value: Any) -> str:
    """A value on one line: strings as they are, anything else as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Prints aligned columns; cells longer than 60 characters are cut with ``…``."""
    cells = [[_cut(_compact(cell)) for cell in row] for row in rows]
    if not cells:
        click.echo("(none)")
        return
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cut(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _show_instance(instance: Instance) -> None:
    fields = [
        ("id", instance.id),
        ("definition", f"{instance.definition_key} v{instance.definition_version}"),
        ("status", instance.status),
        ("value", instance.value),
        ("context", instance.context),
        ("output", instance.output),
        ("error", instance.error),
        ("created", instance.created_at.isoformat()),
    ]
    if instance.batch_id:
        fields.append(("batch", instance.batch_id))
    for name, value in fields:
        click.echo(f"{name + ':':<12}{_compact(value)}")


def _show_task(task: Task) -> None:
    label = f"{task.type} {task.name}" if task.name else task.type
    click.echo(f"task {task.id} ({label}): {task.status}")


# --- definitions and instances -----------------------------------------------


@click.command()
@click.argument("spec_path", metavar="SPEC.json")
@click.option("--key", help="Definition key (default: the spec's id).")
@_json_option
@_connection_options
def deploy(
    spec_path: str, key: str | None, as_json: bool, url: str | None, api_key: str | None
) -> None:
    """Deploy a workflow spec as a new version of its definition.

    Deploying the same spec again is a no-op that prints the existing version. The
    server validates the spec and names the JSON path of every problem.
    """
    spec = _parse_json(_read_text(spec_path, "spec"), spec_path)
    if not isinstance(spec, dict):
        raise CliError(f"{spec_path}: a spec is a JSON object")
    with _client(url, api_key) as client:
        definition = client.deploy(spec, key)
    if as_json:
        _echo_json(definition)
    else:
        click.echo(f"deployed {definition.key} v{definition.version} ({definition.checksum[:12]})")


def _priority_option(*, default: str) -> Callable[[F], F]:
    """``--priority N``: 0 to 10, higher first; left out, the server's default."""
    return click.option(
        "--priority",
        type=click.IntRange(0, 10),
        metavar="0..10",
        help=f"Higher goes first (default: {default}); see docs/scheduling.md.",
    )


@click.command()
@click.argument("key")
@click.option("--input", "input_json", metavar="JSON", help="Instance input, a JSON object.")
@click.option("--version", type=int, help="Definition version (default: the latest).")
@click.option(
    "--idempotency-key", metavar="K", help="Starting twice with K returns the first instance."
)
@_priority_option(default="10, interactive")
@click.option("--wait", is_flag=True, help="Wait until it is done, failed or cancelled.")
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds --wait waits."
)
@_json_option
@_connection_options
def start(
    key: str,
    input_json: str | None,
    version: int | None,
    idempotency_key: str | None,
    priority: int | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Start an instance of definition KEY and print it.

    With --wait, exits 1 unless the instance ends done.
    """
    instance_input = _json_object(input_json, "--input")
    with _client(url, api_key) as client:
        instance = client.start(
            key,
            instance_input,
            version=version,
            idempotency_key=idempotency_key,
            priority=priority,
        )
        waits_for: list[str] = []
        if wait:
            try:
                instance = client.wait(instance.id, timeout=timeout)
            except TimeoutError:
                instance = client.get(instance.id)
                waits_for = _waits_for(client, instance)
    if as_json:
        _echo_json(instance)
    else:
        _show_instance(instance)
    if waits_for:
        raise WaitTimedOut(instance, timeout, waits_for)
    if wait and instance.status != "done":
        raise SystemExit(1)


class WaitTimedOut(click.ClickException):
    """``start --wait`` ran out of time: says what the instance waits for, exit 1."""

    def __init__(self, instance: Instance, timeout: float, waits_for: Sequence[str]) -> None:
        super().__init__(
            f"timeout: instance {instance.id} is still {instance.status} after {timeout:g}s, "
            f"in state {_compact(instance.value)}; it waits for"
        )
        self.waits_for = tuple(waits_for)

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)
        for line in self.waits_for:
            click.echo(f"  {line}", err=True)


def _waits_for(client: Client, instance: Instance) -> list[str]:
    from statefleet.commands.waiting import waiting_for

    if instance.finished:  # it finished between the last poll and this read
        return []
    definition = client.definition(instance.definition_key, instance.definition_version)
    return waiting_for(instance, definition.spec, client.tasks(instance.id))


@click.command()
@click.argument("instance_id", metavar="ID")
@click.argument("event_type", metavar="TYPE")
@click.option("--payload", "payload_json", metavar="JSON", help="Event payload, a JSON object.")
@click.option(
    "--id", "event_id", metavar="EVENT_ID", help="Sending the same id twice applies once."
)
@_json_option
@_connection_options
def send(
    instance_id: str,
    event_type: str,
    payload_json: str | None,
    event_id: str | None,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Send event TYPE to instance ID; it is applied asynchronously."""
    payload = _json_object(payload_json, "--payload")
    with _client(url, api_key) as client:
        accepted = client.send(instance_id, event_type, payload, event_id=event_id)
    if as_json:
        _echo_json({"eventId": accepted})
    else:
        click.echo(f"accepted {event_type} as event {accepted}")


@click.command()
@click.argument("instance_id", metavar="ID")
@_json_option
@_connection_options
def get(instance_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Show an instance: status, state value, context, output, error."""
    with _client(url, api_key) as client:
        instance = client.get(instance_id)
    if as_json:
        _echo_json(instance)
    else:
        _show_instance(instance)


@click.command()
@click.argument("instance_id", metavar="ID")
@_json_option
@_connection_options
def cancel(instance_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Cancel a running instance and its open tasks."""
    with _client(url, api_key) as client:
        instance = client.cancel(instance_id)
    if as_json:
        _echo_json(instance)
    else:
        click.echo(f"cancelled {instance.id}")


@click.command()
@click.argument("instance_id", metavar="ID")
@_json_option
@_connection_options
def history(instance_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Print an instance's audit log: every event applied, oldest first."""
    with _client(url, api_key) as client:
        entries = client.history(instance_id)
        if as_json:
            _echo_json_lines(entries)
            return
        _table(
            ("SEQ", "AT", "EVENT", "FROM", "TO", "HANDLED"),
            (
                (e.seq, e.created_at.isoformat(), e.type, e.state_before, e.state_after, e.handled)
                for e in entries
            ),
        )


@click.command()
@click.option("--definition", "definition_key", metavar="KEY", help="Only this definition.")
@click.option(
    "--status",
    type=click.Choice(["running", "done", "failed", "cancelled"]),
    help="Only instances with this status.",
)
@_limit_option("At most this many (newest first).")
@_json_option
@_connection_options
def ls(
    definition_key: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """List instances, newest first."""
    with _client(url, api_key) as client:
        found = client.list(definition_key=definition_key, status=status, page_size=min(limit, 500))
        instances = (instance for _, instance in zip(range(limit), found, strict=False))
        if as_json:
            _echo_json_lines(instances)
            return
        _table(
            ("ID", "DEFINITION", "STATUS", "VALUE", "CREATED"),
            (
                (
                    i.id,
                    f"{i.definition_key} v{i.definition_version}",
                    i.status,
                    i.value,
                    i.created_at.isoformat(),
                )
                for i in instances
            ),
        )


# --- definitions ------------------------------------------------------------


@click.group()
def definitions() -> None:
    """List the deployed definitions; show one with its spec."""


@definitions.command("ls")
@_json_option
@_connection_options
def definitions_ls(as_json: bool, url: str | None, api_key: str | None) -> None:
    """List every definition at its latest version."""
    with _client(url, api_key) as client:
        found = client.definitions()
    if as_json:
        _echo_json_lines(found)
        return
    _table(
        ("KEY", "VERSION", "CHECKSUM", "CREATED"),
        ((d.key, d.version, d.checksum[:12], d.created_at.isoformat()) for d in found),
    )


@definitions.command("get")
@click.argument("key")
@click.option("--version", type=int, help="This version (default: the latest).")
@_json_option
@_connection_options
def definitions_get(
    key: str, version: int | None, as_json: bool, url: str | None, api_key: str | None
) -> None:
    """Show definition KEY (its latest version unless --version) and its spec.

    With --json, the definition as the API sends it, spec included
    (`statefleet definitions get KEY --json | jq .spec > spec.json`).
    """
    with _client(url, api_key) as client:
        definition = client.definition(key, version)
    if as_json:
        _echo_json(definition)
        return
    for name, value in (
        ("key", definition.key),
        ("version", definition.version),
        ("checksum", definition.checksum),
        ("created", definition.created_at.isoformat()),
    ):
        click.echo(f"{name + ':':<12}{value}")
    click.echo("spec:")
    click.echo(orjson.dumps(definition.spec, option=orjson.OPT_INDENT_2).decode())


# --- tasks ------------------------------------------------------------------


@click.group()
def tasks() -> None:
    """List an instance's tasks or the inbox; complete, fail or retry one."""


@tasks.command("ls")
@click.argument("instance_id", metavar="INSTANCE_ID")
@_json_option
@_connection_options
def tasks_ls(instance_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """List the tasks an instance created."""
    with _client(url, api_key) as client:
        found = client.tasks(instance_id)
    if as_json:
        _echo_json_lines(found)
        return
    decisions = {t.id: d for t in found if (d := _decision(t)) is not None}
    headers: tuple[str, ...] = ("ID", "TYPE", "NAME", "STATUS", "ATTEMPTS", "LAST ERROR")
    rows = [[t.id, t.type, t.name, t.status, t.attempts, t.last_error] for t in found]
    if decisions:
        headers += ("DECISION",)
        for row, task in zip(rows, found, strict=True):
            row.append(decisions[task.id].summary if task.id in decisions else None)
    _table(headers, rows)
    for task in found:
        if task.id in decisions:
            click.echo("")
            for line in decisions[task.id].lines(task):
                click.echo(line)


@record
class _Decision:
    """An AI task's stored decision (``docs/ai.md``): the proposal and the policy's verdict."""

    event: str
    confidence: Any
    reason: str | None
    emitted: bool
    rejected: bool
    why: str | None

    @property
    def summary(self) -> str:
        return f"{self.event} {'emitted' if self.emitted else 'not emitted'}"

    def lines(self, task: Task) -> list[str]:
        verdict = "emitted" if self.emitted else ("rejected" if self.rejected else "held")
        label = f"{task.name} ({task.id})" if task.name else task.id
        head = f"decision of {label}: {self.event}, confidence {_compact(self.confidence)}"
        out = [f"{head}, {verdict}" + (f": {self.why}" if self.why else "")]
        if self.reason:
            out.append(f"  the model's reason: {self.reason}")
        return out


def _decision(task: Task) -> _Decision | None:
    """The decision an ``AI`` task stored in its output, or None (no answer yet)."""
    output = task.output
    if task.type != "AI" or not isinstance(output, dict):
        return None
    decision = output.get("decision")
    if not isinstance(decision, dict) or "emitted" not in output:
        return None
    reason = decision.get("reason")
    why = output.get("rejectionReason")
    return _Decision(
        event=str(decision.get("event")),
        confidence=decision.get("confidence"),
        reason=reason if isinstance(reason, str) and reason else None,
        emitted=output.get("emitted") is True,
        rejected=output.get("rejected") is True,
        why=why if isinstance(why, str) and why else None,
    )


@tasks.command("inbox")
@_limit_option("At most this many (the longest waiting first).")
@_json_option
@_connection_options
def tasks_inbox(limit: int, as_json: bool, url: str | None, api_key: str | None) -> None:
    """List the pending HUMAN tasks of every instance: what waits for a person."""
    with _client(url, api_key) as client:
        pages = client.list_tasks("pending", "HUMAN", page_size=min(limit, 1000))
        found = _first(pages, limit)
    if as_json:
        _echo_json_lines(found)
        return
    _table(
        ("ID", "INSTANCE", "NAME", "INPUT", "WAITING SINCE"),
        (
            (t.id, t.instance_id, t.name, _cut(_compact(t.input), 40), t.created_at.isoformat())
            for t in found
        ),
    )


@tasks.command("complete")
@click.argument("task_id", metavar="TASK_ID")
@click.option("--output", "output_json", metavar="JSON", help="The task's output (any JSON).")
@_json_option
@_connection_options
def tasks_complete(
    task_id: str, output_json: str | None, as_json: bool, url: str | None, api_key: str | None
) -> None:
    """Complete a pending HUMAN task; its completion event fires."""
    output = None if output_json is None else _parse_json(output_json, "--output")
    with _client(url, api_key) as client:
        task = client.complete_task(task_id, output)
    if as_json:
        _echo_json(task)
    else:
        _show_task(task)


@tasks.command("fail")
@click.argument("task_id", metavar="TASK_ID")
@click.option("--error", "message", required=True, help="Why it failed.")
@_json_option
@_connection_options
def tasks_fail(
    task_id: str, message: str, as_json: bool, url: str | None, api_key: str | None
) -> None:
    """Fail a pending HUMAN task; its failure event fires, or the instance fails."""
    with _client(url, api_key) as client:
        task = client.fail_task(task_id, message)
    if as_json:
        _echo_json(task)
    else:
        _show_task(task)


@tasks.command("retry")
@click.argument("task_id", metavar="TASK_ID")
@_json_option
@_connection_options
def tasks_retry(task_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Make a failed task pending again (and the instance it failed running again)."""
    with _client(url, api_key) as client:
        task = client.retry_task(task_id)
    if as_json:
        _echo_json(task)
    else:
        _show_task(task)


# --- batches ----------------------------------------------------------------


class _DefaultCommandGroup(click.Group):
    """A group that runs ``default`` when its first argument names no subcommand.

    So ``statefleet batch KEY inputs.jsonl`` (the short form) and ``statefleet batch
    status ID`` both work. A definition literally named ``start`` or ``status`` needs
    the long form, ``batch start KEY FILE``.
    """

    def __init__(self, *args: Any, default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default, *args]
        return super().parse_args(ctx, args)


@click.group(
    cls=_DefaultCommandGroup,
    default="start",
    subcommand_metavar="[start] KEY INPUTS.jsonl | status ID... ",
)
def batch() -> None:
    """Start many instances at once and watch them finish.

    `statefleet batch KEY inputs.jsonl` is `statefleet batch start KEY inputs.jsonl`.
    """


def _read_inputs(path: str) -> list[dict[str, Any]]:
    """Every input of a JSON Lines file, checked before anything starts."""
    source = "stdin" if path == "-" else path
    inputs = []
    for number, line in enumerate(_read_text(path, "inputs").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        value = _parse_json(stripped, f"{source}, line {number}")
        if not isinstance(value, dict):
            raise CliError(f"{source}, line {number}: an input is a JSON object")
        inputs.append(value)
    return inputs


def _batch_key(key: str, version: int | None, chunk_size: int, inputs: list[Any]) -> str:
    """An idempotency key for ``batch start``, derived from what it would start.

    The same command on the same file (after a timeout, or a Ctrl-C before the answer)
    then gets the batches the first run started instead of starting them again. The
    inputs are hashed as canonical JSON, so blank lines and comments do not count.
    """
    digest = hashlib.sha256(orjson.dumps([key, version, chunk_size]))
    for item in inputs:
        digest.update(orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
        digest.update(b"\n")
    return f"cli-batch-{digest.hexdigest()[:32]}"


def _progress_bar(console: Any = None) -> Any:
    """The batch bar, laid out to stay whole in an 80-column terminal.

    Everything but the bar has a fixed, short width (the description is cut to 20
    characters): the bar takes what is left, so a wide terminal gets a longer bar and
    a narrow one still shows every figure. While inputs are still being sent it
    counts the started instances, then the finished ones and the failed ones.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.table import Column
    from rich.text import Text

    class CountsColumn(ProgressColumn):
        """``starting 5,000/10,000``, then ``6,210/10,000 failed 12``."""

        def render(self, task: Any) -> Text:
            total = int(task.total or 0)
            started = int(task.fields["started"])
            if started < total:
                return Text(f"starting {started:,}/{total:,}")
            return Text(f"{int(task.completed):,}/{total:,} failed {task.fields['failed']:,}")

    class RateColumn(ProgressColumn):
        """Instances finished per second, as rich estimates it from recent updates."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-/s" if speed is None else f"{speed:,.0f}/s")

    return Progress(
        TextColumn(
            "{task.description}",
            table_column=Column(max_width=20, no_wrap=True, overflow="ellipsis"),
        ),
        BarColumn(bar_width=None, table_column=Column(min_width=10, ratio=1)),
        CountsColumn(table_column=Column(no_wrap=True)),
        RateColumn(table_column=Column(no_wrap=True)),
        TextColumn("ETA", table_column=Column(no_wrap=True)),
        TimeRemainingColumn(compact=True, table_column=Column(no_wrap=True)),
        expand=True,
        # The bar goes to stderr: stdout stays for results a script may read.
        console=console or Console(stderr=True),
    )


def _resume_hint(batch_ids: Sequence[str]) -> None:
    if batch_ids:
        click.echo(
            "stopped watching; the batch keeps running on the server. Resume with:\n"
            f"  statefleet batch status {' '.join(batch_ids)}",
            err=True,
        )
    else:
        click.echo("interrupted before any instance started", err=True)


def _totals(progresses: Sequence[BatchProgress]) -> dict[str, int]:
    return {
        "total": sum(p.total for p in progresses),
        "done": sum(p.counts.done for p in progresses),
        "failed": sum(p.counts.failed for p in progresses),
        "cancelled": sum(p.counts.cancelled for p in progresses),
        "running": sum(p.counts.running for p in progresses),
        "finished": sum(p.finished for p in progresses),
    }


def _watch(client: Client, progress: Any, task: Any, batch_ids: Sequence[str], every: float) -> Any:
    """Polls the batches until every instance finished; returns the last totals."""
    while True:
        totals = _totals([client.batch(b) for b in batch_ids])
        progress.update(
            task,
            total=totals["total"],
            completed=totals["finished"],
            started=totals["total"],
            done=totals["done"],
            failed=totals["failed"],
        )
        if totals["finished"] >= totals["total"]:
            return totals
        time.sleep(every)


def _summary(batch_ids: Sequence[str], totals: Mapping[str, int], as_json: bool) -> None:
    if as_json:
        _echo_json({"batchIds": list(batch_ids), **totals})
    else:
        click.echo(
            f"{totals['total']:,} instances: {totals['done']:,} done, "
            f"{totals['failed']:,} failed, {totals['cancelled']:,} cancelled"
        )


def _poll_option(command: F) -> F:
    return click.option(
        "--poll-interval",
        type=click.FloatRange(min=0),
        default=1.0,
        show_default=True,
        help="Seconds between progress checks.",
    )(command)


@batch.command("start")
@click.argument("key")
@click.argument("inputs_path", metavar="INPUTS.jsonl|-")
@click.option("--version", type=int, help="Definition version (default: the latest).")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=DEFAULT_CHUNK_SIZE,
    show_default=True,
    help="Inputs per request; each request is one batch.",
)
@click.option(
    "--no-watch", is_flag=True, help="Print the batch ids, one per line, and return at once."
)
@click.option(
    "--idempotency-key",
    help="Key of this start (default: derived from KEY, the version, the chunk size and the "
    "inputs, so running the same command again starts nothing twice; pass a new key to "
    "start the same inputs again on purpose).",
)
@_priority_option(default="5, behind interactive work; a batch already started keeps its own")
@_poll_option
@_json_option
@_connection_options
def batch_start(
    key: str,
    inputs_path: str,
    version: int | None,
    chunk_size: int,
    no_watch: bool,
    idempotency_key: str | None,
    priority: int | None,
    poll_interval: float,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Start one instance of KEY per line of INPUTS.jsonl and watch them finish.

    Each line is an input object. Ctrl-C stops watching only: the instances keep
    running, and `statefleet batch status ID...` resumes the bar. With --no-watch the
    ids of the started batches are printed, one per line, and nothing is watched;
    with --json the started batches are printed as JSON Lines (`{"batchId", "count"}`).
    """
    inputs = _read_inputs(inputs_path)
    if not inputs:
        raise CliError(f"{inputs_path}: no inputs")
    idempotency_key = idempotency_key or _batch_key(key, version, chunk_size, inputs)
    started: list[StartedBatch] = []
    watch = not (as_json or no_watch)
    with _client(url, api_key) as client:
        if not watch:
            for started_batch in client.start_many(
                key,
                inputs,
                version=version,
                chunk_size=chunk_size,
                idempotency_key=idempotency_key,
                priority=priority,
            ):
                if as_json:
                    _echo_json(started_batch)
                else:
                    click.echo(started_batch.batch_id)
                started.append(started_batch)
            if not as_json:
                ids = " ".join(b.batch_id for b in started)
                click.echo(f"watch them with: statefleet batch status {ids}", err=True)
            return
        try:
            with _progress_bar() as progress:
                task = progress.add_task(key, total=len(inputs), started=0, done=0, failed=0)
                for index, offset in enumerate(range(0, len(inputs), chunk_size)):
                    chunk = inputs[offset : offset + chunk_size]
                    # The key start_many gives its index-th chunk, one chunk at a time.
                    chunk_key = f"{idempotency_key}:{index}"
                    started.append(
                        client.batch(
                            key,
                            chunk,
                            version=version,
                            idempotency_key=chunk_key,
                            priority=priority,
                        )
                    )
                    progress.update(task, started=sum(b.count for b in started))
                batch_ids = [b.batch_id for b in started]
                totals = _watch(client, progress, task, batch_ids, poll_interval)
        except KeyboardInterrupt:
            _resume_hint([b.batch_id for b in started])
            raise SystemExit(EXIT_INTERRUPTED) from None
    _summary(batch_ids, totals, as_json=False)


@batch.command("status")
@click.argument("batch_ids", metavar="ID...", nargs=-1, required=True)
@_poll_option
@_json_option
@_connection_options
def batch_status(
    batch_ids: tuple[str, ...],
    poll_interval: float,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Watch running batches again (several ids add up into one bar).

    With --json, prints each batch's progress once, as JSON Lines, and returns.
    """
    with _client(url, api_key) as client:
        if as_json:
            for batch_id in batch_ids:
                _echo_json(client.batch(batch_id))
            return
        try:
            with _progress_bar() as progress:
                task = progress.add_task(
                    ", ".join(batch_ids), total=None, started=0, done=0, failed=0
                )
                totals = _watch(client, progress, task, batch_ids, poll_interval)
        except KeyboardInterrupt:
            _resume_hint(batch_ids)
            raise SystemExit(EXIT_INTERRUPTED) from None
    _summary(batch_ids, totals, as_json=False)


# --- registration -----------------------------------------------------------


def register(group: click.Group) -> None:
    """Adds the client commands to ``group`` (the ``statefleet`` CLI)."""
    for command in (deploy, definitions, start, send, get, history, ls, cancel, tasks, batch):
        group.add_command(command)

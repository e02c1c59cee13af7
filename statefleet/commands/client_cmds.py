"""CLI commands that drive a statefleet server through :mod:`statefleet.client`.

``register(group)`` adds them to the ``statefleet`` group: ``deploy``, ``start``,
``send``, ``get``, ``history``, ``ls``, ``cancel``, ``tasks ls|complete|fail|retry``
and ``batch [start] KEY INPUTS.jsonl`` / ``batch status ID...``.

Every command takes ``--url`` (``$STATEFLEET_URL``) and ``--api-key``
(``$STATEFLEET_API_KEY``); every command that prints a resource takes ``--json``:
one JSON object (camelCase, as the API sends it) or, for lists, JSON Lines, so that
output can be piped without waiting for the last page. An API error prints
``error: <code>: <message>`` on stderr and exits 1; so does an unreachable server.

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

__all__ = ["register"]

F = TypeVar("F", bound=Callable[..., Any])

#: The CLI sends a 10,000-input batch in one request (the issue's "one call"); the
#: server's default body limit (10 MiB) leaves ~1 KiB per input at this size.
DEFAULT_CHUNK_SIZE = 10_000
#: Exit status after Ctrl-C, as shells report a SIGINT.
EXIT_INTERRUPTED = 130


class CliError(click.ClickException):
    """A user's mistake found before any request: ``Error: <message>``, exit 1."""


class ApiFailure(click.ClickException):
    """An API error or an unreachable server: ``error: <code>: <message>``, exit 1."""

    def __init__(self, code: str, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.details = tuple(details)

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)
        for line in self.details:
            click.echo(f"  {line}", err=True)


# --- plumbing ---------------------------------------------------------------


def _connection_options(command: F) -> F:
    command = click.option(
        "--api-key",
        envvar="STATEFLEET_API_KEY",
        metavar="KEY",
        help="Tenant API key; $STATEFLEET_API_KEY.",
    )(command)
    return click.option(
        "--url",
        envvar="STATEFLEET_URL",
        default=DEFAULT_URL,
        show_default=True,
        metavar="URL",
        help="Server address; $STATEFLEET_URL.",
    )(command)


def _json_option(command: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Machine output: JSON (JSON Lines for lists)."
    )(command)


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
def _client(url: str, api_key: str | None) -> Iterator[Client]:
    """A client for one command; turns API and network errors into one-line exits."""
    transport = click.get_current_context().find_object(httpx.BaseTransport)
    try:
        with Client(url, api_key, transport=transport) as client:
            yield client
    except StatefleetError as error:
        raise ApiFailure(error.code, error.message, _details(error)) from None
    except httpx.TransportError as error:
        raise ApiFailure("unreachable", f"cannot reach {url}: {error}") from None


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
def deploy(spec_path: str, key: str | None, as_json: bool, url: str, api_key: str | None) -> None:
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


@click.command()
@click.argument("key")
@click.option("--input", "input_json", metavar="JSON", help="Instance input, a JSON object.")
@click.option("--version", type=int, help="Definition version (default: the latest).")
@click.option(
    "--idempotency-key", metavar="K", help="Starting twice with K returns the first instance."
)
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
    wait: bool,
    timeout: float,
    as_json: bool,
    url: str,
    api_key: str | None,
) -> None:
    """Start an instance of definition KEY and print it.

    With --wait, exits 1 unless the instance ends done.
    """
    instance_input = _json_object(input_json, "--input")
    with _client(url, api_key) as client:
        instance = client.start(
            key, instance_input, version=version, idempotency_key=idempotency_key
        )
        if wait:
            try:
                instance = client.wait(instance.id, timeout=timeout)
            except TimeoutError as exc:
                raise ApiFailure("timeout", f"{exc} after {timeout:g}s") from None
    if as_json:
        _echo_json(instance)
    else:
        _show_instance(instance)
    if wait and instance.status != "done":
        raise SystemExit(1)


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
    url: str,
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
def get(instance_id: str, as_json: bool, url: str, api_key: str | None) -> None:
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
def cancel(instance_id: str, as_json: bool, url: str, api_key: str | None) -> None:
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
def history(instance_id: str, as_json: bool, url: str, api_key: str | None) -> None:
    """Print an instance's audit log: every event applied, oldest first."""
    with _client(url, api_key) as client:
        entries = client.history(instance_id)
        if as_json:
            for entry in entries:
                _echo_json(entry)
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
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most this many (newest first).",
)
@_json_option
@_connection_options
def ls(
    definition_key: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
    url: str,
    api_key: str | None,
) -> None:
    """List instances, newest first."""
    with _client(url, api_key) as client:
        found = client.list(definition_key=definition_key, status=status, page_size=min(limit, 500))
        instances = (instance for _, instance in zip(range(limit), found, strict=False))
        if as_json:
            for instance in instances:
                _echo_json(instance)
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


# --- tasks ------------------------------------------------------------------


@click.group()
def tasks() -> None:
    """List an instance's tasks; complete, fail or retry one."""


@tasks.command("ls")
@click.argument("instance_id", metavar="INSTANCE_ID")
@_json_option
@_connection_options
def tasks_ls(instance_id: str, as_json: bool, url: str, api_key: str | None) -> None:
    """List the tasks an instance created."""
    with _client(url, api_key) as client:
        found = client.tasks(instance_id)
    if as_json:
        for task in found:
            _echo_json(task)
        return
    _table(
        ("ID", "TYPE", "NAME", "STATUS", "ATTEMPTS", "LAST ERROR"),
        ((t.id, t.type, t.name, t.status, t.attempts, t.last_error) for t in found),
    )


@tasks.command("complete")
@click.argument("task_id", metavar="TASK_ID")
@click.option("--output", "output_json", metavar="JSON", help="The task's output (any JSON).")
@_json_option
@_connection_options
def tasks_complete(
    task_id: str, output_json: str | None, as_json: bool, url: str, api_key: str | None
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
def tasks_fail(task_id: str, message: str, as_json: bool, url: str, api_key: str | None) -> None:
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
def tasks_retry(task_id: str, as_json: bool, url: str, api_key: str | None) -> None:
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


def _progress_bar() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Instances finished per second, as rich estimates it from recent updates."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-/s" if speed is None else f"{speed:,.0f}/s")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "started {task.fields[started]:,} · done {task.fields[done]:,}"
            " · failed {task.fields[failed]:,}"
        ),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        # The bar goes to stderr: stdout stays for results a script may read.
        console=Console(stderr=True),
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
@click.option("--no-watch", is_flag=True, help="Print the batch ids and return at once.")
@click.option(
    "--idempotency-key",
    help="Key of this start (default: derived from KEY, the version, the chunk size and the "
    "inputs, so running the same command again starts nothing twice; pass a new key to "
    "start the same inputs again on purpose).",
)
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
    poll_interval: float,
    as_json: bool,
    url: str,
    api_key: str | None,
) -> None:
    """Start one instance of KEY per line of INPUTS.jsonl and watch them finish.

    Each line is an input object. Ctrl-C stops watching only: the instances keep
    running, and `statefleet batch status ID...` resumes the bar. With --json (or
    --no-watch) the started batches are printed as JSON Lines and nothing is watched.
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
                key, inputs, version=version, chunk_size=chunk_size, idempotency_key=idempotency_key
            ):
                if as_json:
                    _echo_json(started_batch)
                else:
                    click.echo(f"started batch {started_batch.batch_id} ({started_batch.count:,})")
            return
        try:
            with _progress_bar() as progress:
                task = progress.add_task(key, total=len(inputs), started=0, done=0, failed=0)
                for index, offset in enumerate(range(0, len(inputs), chunk_size)):
                    chunk = inputs[offset : offset + chunk_size]
                    # The key start_many gives its index-th chunk, one chunk at a time.
                    chunk_key = f"{idempotency_key}:{index}"
                    started.append(
                        client.batch(key, chunk, version=version, idempotency_key=chunk_key)
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
    batch_ids: tuple[str, ...], poll_interval: float, as_json: bool, url: str, api_key: str | None
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
    for command in (deploy, start, send, get, history, ls, cancel, tasks, batch):
        group.add_command(command)

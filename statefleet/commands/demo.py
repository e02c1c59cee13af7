"""``statefleet demo``: the README's main job, end to end, in one command.

Starts the embedded stack (:mod:`statefleet.embedded`) in a temporary state dir,
deploys the hello workflow, runs a batch of instances through the HTTP API with a
progress bar, with the ``EMAIL`` step delivered to a real SMTP sink (aiosmtpd, in a
process of its own, on a free port; ``NOOP`` when aiosmtpd is not installed), prints the
throughput and one instance's audit log, and stops everything it started.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import click
import uvloop

if TYPE_CHECKING:
    from statefleet.mailsink import RunningSink

__all__ = ["demo", "register"]

DEFINITION_KEY = "hello-workflow"


@contextmanager
def _smtp_sink() -> Iterator[tuple[RunningSink, int] | None]:
    """A real SMTP server on a free localhost port, or None without aiosmtpd."""
    try:
        from statefleet.mailsink import running_mail_sink
    except ImportError:
        yield None
        return
    with running_mail_sink() as running:
        yield running


def _progress() -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )


def _state(value: Any) -> str:
    return "-" if value is None else value if isinstance(value, str) else str(value)


def _effects(effects: Any) -> str:
    if not effects:
        return ""
    parts = []
    for effect in effects:
        task = effect.get("task") if isinstance(effect, dict) else None
        if isinstance(task, dict):
            parts.append(f"{effect.get('type')} {task.get('type')} {task.get('name', '')}".strip())
        elif isinstance(effect, dict):
            parts.append(str(effect.get("type")))
        else:
            parts.append(str(effect))
    return ", ".join(parts)


async def _run(instances: int, home: pathlib.Path, durable: bool, poll: float) -> None:
    from rich.console import Console
    from rich.table import Table

    from statefleet.client import AsyncClient, BatchProgress
    from statefleet.embedded import EmbeddedStack
    from statefleet.engine.handlers import SmtpSettings
    from statefleet.examples import HELLO_WORKFLOW
    from statefleet.registries import builtin_registry

    console = Console()
    stop = asyncio.Event()
    with _smtp_sink() as smtp:
        spec = HELLO_WORKFLOW
        if smtp is None:
            console.print("aiosmtpd is not installed: the EMAIL step runs as NOOP")
            spec = _as_noop(HELLO_WORKFLOW)
            factory: Any = builtin_registry
        else:
            settings = SmtpSettings(host="127.0.0.1", port=smtp[1], timeout_s=30)
            factory = functools.partial(builtin_registry, settings)
            console.print(f"smtp sink: 127.0.0.1:{smtp[1]} (aiosmtpd, a process of its own)")
        stack = EmbeddedStack(
            home,
            port=0,
            durable=durable,
            handlers=factory,
            say=lambda message: console.print(message, highlight=False),
        )
        async with stack, AsyncClient(stack.url, stack.api_key, timeout=120) as client:
            console.print(f"api: {stack.url}")
            # After start-up: ray.init installs its own SIGTERM handler (sys.exit).
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await client.deploy(spec, key=DEFINITION_KEY)
            inputs = [{"n": i} for i in range(instances)]
            with _progress() as progress:
                bar = progress.add_task(DEFINITION_KEY, total=instances, rate="")
                began = time.monotonic()
                batches = await client.start_many(DEFINITION_KEY, inputs, chunk_size=1000)
                finished = 0
                counts: dict[str, BatchProgress] = {}
                while finished < instances and not stop.is_set():
                    # A finished batch is not asked again: each answer is a count over
                    # the batch's rows, work the engine's Postgres does in the run.
                    for b in batches:
                        known = counts.get(b.batch_id)
                        if known is None or known.finished < known.total:
                            counts[b.batch_id] = await client.batch(b.batch_id)
                    finished = sum(c.finished for c in counts.values())
                    elapsed = time.monotonic() - began
                    progress.update(bar, completed=finished, rate=f"{finished / elapsed:,.0f}/s")
                    if finished < instances:
                        await asyncio.sleep(poll)
                elapsed = time.monotonic() - began
            if stop.is_set():
                console.print("interrupted; stopping")
                return
            done = sum(c.counts.done for c in counts.values())
            console.print(
                f"throughput: {finished / elapsed:,.1f} completions/s "
                f"({finished:,} instances in {elapsed:.2f} s; {done:,} done, "
                f"{finished - done:,} failed or cancelled)"
            )
            if smtp is not None:
                received = await smtp[0].settled(done)
                console.print(f"smtp sink received {received:,} message(s)")
            one = await anext(aiter(client.list(definition_key=DEFINITION_KEY, page_size=1)))
            table = Table(title=f"audit log of instance {one.id} ({one.status})")
            for column in ("seq", "event", "state before -> after", "effects"):
                table.add_column(column)
            async for entry in client.history(one.id):
                table.add_row(
                    str(entry.seq),
                    entry.type,
                    f"{_state(entry.state_before)} -> {_state(entry.state_after)}",
                    _effects(entry.effects),
                )
            console.print(table)
            console.print("audit summary: ok")


def _as_noop(spec: dict[str, Any]) -> dict[str, Any]:
    import json

    converted: dict[str, Any] = json.loads(
        json.dumps(spec).replace('"type": "EMAIL"', '"type": "NOOP"')
    )
    return converted


@click.command()
@click.option(
    "--instances", type=click.IntRange(min=1), default=1000, show_default=True, help="Batch size."
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    help="State dir to keep (default: a temporary one, deleted afterwards).",
)
@click.option("--poll-interval", type=float, default=0.2, show_default=True, hidden=True)
def demo(instances: int, home: pathlib.Path | None, poll_interval: float) -> None:
    """Run the hello workflow N times on the embedded stack; print throughput and an audit log.

    Starts Postgres, Ray and the API in this process, delivers the workflow's e-mail to
    a local SMTP sink, and stops everything before it returns.
    """
    from statefleet.embedded import PostgresUnavailable

    temporary = home is None
    # The state dir holds the Postgres data, which a non-root account must reach.
    where = home or pathlib.Path(tempfile.mkdtemp(prefix="statefleet-demo-"))
    if temporary:
        where.chmod(0o711)
    try:
        # uvloop, like ``statefleet worker`` and ``api``: the engine loop runs here.
        uvloop.run(_run(instances, where, durable=not temporary, poll=poll_interval))
    except PostgresUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if temporary:
            with suppress(OSError):
                shutil.rmtree(where)


def register(group: click.Group) -> None:
    group.add_command(demo)

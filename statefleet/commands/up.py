"""``statefleet up``: the whole engine in one process tree, for a newcomer's first minute.

Embedded Postgres (unless ``DATABASE_URL``), migrations, local Ray (or ``RAY_ADDRESS``),
the queue driver the environment selects (memory by default), shards, pools,
the engine loop, sweeper and the HTTP API; see :mod:`statefleet.embedded`. SIGINT/SIGTERM
stop it in order; a SIGKILL takes Postgres down with it and the next ``up`` on the
same ``STATEFLEET_HOME`` continues from the committed state (the sweeper republishes
whatever was in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal

import click
import uvloop

__all__ = ["register", "up"]


async def _run_until_signal(host: str, port: int) -> None:
    from statefleet.embedded import api_url, state_dir
    from statefleet.homelock import home_lock
    from statefleet.serving import check_port

    home = state_dir()
    # The home first (a second `up` must touch nothing), then the port, then the rest.
    with home_lock(home, api_url(host, port)):
        check_port(host, port)
        await _run_owned(home, host, port)


async def _run_owned(home: pathlib.Path, host: str, port: int) -> None:
    env = dict(os.environ)
    if env.get("STATEFLEET_SMTP_HOST"):
        await _run_stack(home, host, port, env)
        return
    # No mail server configured: EMAIL steps go to a local sink that keeps them, so the
    # hello workflow works in a newcomer's first minute.
    from statefleet.mailsink import running_mail_sink

    with running_mail_sink(home / "mail") as (_, smtp_port):
        env.update(STATEFLEET_SMTP_HOST="127.0.0.1", STATEFLEET_SMTP_PORT=str(smtp_port))
        _say(f"smtp: STATEFLEET_SMTP_HOST is unset; EMAIL tasks are kept in {home / 'mail'}")
        await _run_stack(home, host, port, env)


async def _run_stack(home: pathlib.Path, host: str, port: int, env: dict[str, str]) -> None:
    from statefleet.embedded import EmbeddedStack

    async with EmbeddedStack(home, host=host, port=port, env=env, say=_say) as stack:
        # Installed after start-up on purpose: ray.init replaces SIGTERM's handler with
        # its own sys.exit. A signal during start-up interrupts it, and the stack's
        # __aenter__ stops whatever had started.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"statefleet is up: {stack.url} (state dir {home}); Ctrl-C stops it")
        click.echo(f"export STATEFLEET_URL={stack.url}")
        click.echo(f"export STATEFLEET_API_KEY={stack.api_key}", nl=True)
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(stack.wait_failed())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (stopped, failed):
            waiter.cancel()
        click.echo("stopping...", err=True)
    if stack.failure:
        raise StackFailed(stack.failure)
    click.echo("stopped", err=True)


class StackFailed(RuntimeError):
    """The stack could not go on (its Postgres died for good): ``up`` exits non-zero."""


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.command()
@click.option("--host", envvar="STATEFLEET_API_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="STATEFLEET_API_PORT", default=8080, show_default=True, type=int)
def up(host: str, port: int) -> None:
    """Run everything in one process: Postgres, Ray workers and the HTTP API.

    State lives in $STATEFLEET_HOME (default ~/.statefleet). On first start a tenant
    `default` is created and its key written to $STATEFLEET_HOME/credentials.json;
    the export lines printed at start-up point the CLI at this server.
    """
    from statefleet.config import ConfigError, Settings
    from statefleet.drivers.config import DriverNotImplementedError, QueueConfigError
    from statefleet.embedded import PostgresUnavailable
    from statefleet.engine.ports.backend import BackendUnavailable
    from statefleet.homelock import HomeBusy

    problems = (
        HomeBusy,
        StackFailed,
        ConfigError,
        QueueConfigError,
        DriverNotImplementedError,
        PostgresUnavailable,
        BackendUnavailable,
        OSError,
    )
    from statefleet.engine.logging_setup import configure_logging
    from statefleet.engine.tracing import configure_tracing

    try:
        settings = Settings.load()
        configure_logging(settings.logging())
        configure_tracing(settings.tracing())
        # uvloop, like ``statefleet worker`` and ``api``: the engine loop runs here.
        uvloop.run(_run_until_signal(host, port))
    except problems as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:  # a signal before the handlers were installed
        with contextlib.suppress(Exception):
            click.echo("interrupted", err=True)
        raise SystemExit(130) from None


def register(group: click.Group) -> None:
    group.add_command(up)

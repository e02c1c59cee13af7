"""``statefleet up``: the whole engine in one process tree, for a newcomer's first minute.

Embedded Postgres (unless ``DATABASE_URL``), migrations, local Ray (or ``RAY_ADDRESS``),
the queue driver the environment selects (memory by default), shards, pools,
dispatcher, sweeper and the HTTP API; see :mod:`statefleet.embedded`. SIGINT/SIGTERM
stop it in order; a SIGKILL takes Postgres down with it and the next ``up`` on the
same ``STATEFLEET_HOME`` continues from the committed state (the sweeper republishes
whatever was in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

__all__ = ["register", "up"]


async def _run_until_signal(host: str, port: int) -> None:
    from statefleet.embedded import EmbeddedStack, state_dir

    home = state_dir()
    async with EmbeddedStack(home, host=host, port=port, say=_say) as stack:
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
        await stop.wait()
        click.echo("stopping...", err=True)
    click.echo("stopped", err=True)


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
    from statefleet.drivers.config import DriverNotImplementedError, QueueConfigError
    from statefleet.embedded import PostgresUnavailable

    try:
        asyncio.run(_run_until_signal(host, port))
    except (QueueConfigError, DriverNotImplementedError, PostgresUnavailable, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:  # a signal before the handlers were installed
        with contextlib.suppress(Exception):
            click.echo("interrupted", err=True)
        raise SystemExit(130) from None


def register(group: click.Group) -> None:
    group.add_command(up)

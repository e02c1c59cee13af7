"""``statefleet worker``: the workers alone (Ray shards and pools, dispatcher, sweeper).

For deployments where ``statefleet api`` runs elsewhere: the two share the queue driver
and Postgres. The memory driver is refused, since its queues live in one process and an
API elsewhere could never reach them (``statefleet up`` runs both halves in one).
"""

from __future__ import annotations

import asyncio
import os
import signal
import warnings

import click

from statefleet.commands.api import MEMORY_WARNING

__all__ = ["register", "worker"]


async def _run(database_url: str) -> None:
    from statefleet.drivers.config import create_queue
    from statefleet.embedded import builtin_registry
    from statefleet.engine.store import migrate

    with warnings.catch_warnings():
        # Ray's import emits DeprecationWarnings of its own modules.
        warnings.simplefilter("ignore", DeprecationWarning)
        from statefleet.actors.engine import RayEngine

    stop = asyncio.Event()
    await migrate(database_url)
    queue = create_queue(os.environ)
    try:
        engine = await RayEngine.start(database_url, queue, builtin_registry)
        # After ray.init, which installs its own SIGTERM handler (sys.exit).
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            click.echo(f"worker: {len(engine.shards)} shard(s), {len(engine.pools)} pool(s)")
            await stop.wait()
        finally:
            await engine.stop()
    finally:
        await queue.close()


@click.command()
@click.option(
    "--database-url", envvar="DATABASE_URL", required=True, help="Postgres DSN ($DATABASE_URL)."
)
def worker(database_url: str) -> None:
    """Run the workers: Ray shards and pools, the dispatcher and the sweeper.

    Needs a shared queue driver (WORKFLOW_QUEUE_DRIVER / REDIS_URL / Cloud Tasks);
    joins the Ray cluster at RAY_ADDRESS, else starts a local one.
    """
    from statefleet.drivers.config import DriverNotImplementedError, QueueConfigError, select_driver

    try:
        driver = select_driver(os.environ)
    except QueueConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if driver == "memory":
        raise click.ClickException(
            MEMORY_WARNING.replace("pass --allow-memory", "run `statefleet up`")
        )
    try:
        asyncio.run(_run(database_url))
    except DriverNotImplementedError as exc:
        raise click.ClickException(str(exc)) from None


def register(group: click.Group) -> None:
    group.add_command(worker)

"""``statefleet worker``: the engine alone (shards, pools, the engine loop, the sweeper).

For deployments where ``statefleet api`` runs elsewhere: the two share the queue driver
and Postgres. The memory driver is refused, since its queues live in one process and an
API elsewhere could never reach them (``statefleet up`` runs both halves in one).

The worker serves a small HTTP app of its own on ``STATEFLEET_WORKER_HOST:PORT``:
``/healthz`` (the engine loop is alive), ``/readyz`` (Postgres and the queue answer),
and, under Cloud Tasks, ``/internal/queues/*``, where the broker pushes jobs to this
worker's engine (``WORKFLOW_CLOUDTASKS_TARGET_BASE_URL`` points here).
"""

from __future__ import annotations

import asyncio
import signal

import click
import uvloop

from statefleet.commands.api import MEMORY_WARNING
from statefleet.config import ConfigError, Settings

__all__ = ["register", "worker"]


async def _run(settings: Settings, database_url: str) -> None:
    from statefleet.api.app import create_worker_app
    from statefleet.backends import start_backend
    from statefleet.drivers.config import create_queue
    from statefleet.engine.runtime.engine import Engine
    from statefleet.engine.store import migrate
    from statefleet.engine.store.db import create_pool
    from statefleet.serving import listen, serve

    stop = asyncio.Event()
    # Bound first: a taken port fails the start before Ray or the engine start.
    listener = listen(settings.worker_host, settings.worker_port, "STATEFLEET_WORKER_PORT")
    try:
        await migrate(database_url)
        queue = create_queue(settings.env)
        pool = await create_pool(database_url, max_size=8)
        try:
            knobs = settings.engine()
            backend = start_backend(settings, database_url, pool, engine=knobs)
            engine = Engine(pool, queue, backend, knobs)
            try:
                await engine.start()
                app = create_worker_app(settings.api(), pool=pool, queue=queue, engine=engine)
                stop_server = await serve(app, listener)
                # After ray.init, which installs its own SIGTERM handler (sys.exit).
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                click.echo(
                    f"worker: {backend.shard_count} shard(s), {backend.pool_count} pool(s) "
                    f"({settings.backend} backend); "
                    f"http://{settings.worker_host}:{settings.worker_port}/healthz",
                    err=True,
                )
                try:
                    await stop.wait()
                    click.echo("stopping...", err=True)
                finally:
                    await stop_server()
                    await engine.stop(settings.drain_timeout_ms / 1000, _say)
            finally:
                await engine.close()
        finally:
            await queue.close()
            await pool.close()
    finally:
        listener.close()  # served: already closed; not served: closed here


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.command()
@click.option(
    "--database-url", envvar="DATABASE_URL", required=True, help="Postgres DSN ($DATABASE_URL)."
)
def worker(database_url: str) -> None:
    """Run the engine: shards and pools (Ray, or this process), the engine loop, the sweeper.

    Needs a shared queue driver (WORKFLOW_QUEUE_DRIVER / REDIS_URL / Cloud Tasks);
    joins the Ray cluster at RAY_ADDRESS, else starts a local one
    (STATEFLEET_BACKEND=local: no Ray at all). `statefleet config` shows the settings.
    """
    from statefleet.drivers.config import DriverNotImplementedError
    from statefleet.engine.logging_setup import configure_logging
    from statefleet.engine.ports.backend import BackendUnavailable
    from statefleet.engine.tracing import configure_tracing

    try:
        settings = Settings.load()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(settings.logging())
    configure_tracing(settings.tracing())
    if settings.queue_driver == "memory":
        raise click.ClickException(
            MEMORY_WARNING.replace("pass --allow-memory", "run `statefleet up`")
        )
    try:
        uvloop.run(_run(settings, database_url))
    except (ConfigError, DriverNotImplementedError, BackendUnavailable, OSError) as exc:
        raise click.ClickException(str(exc)) from None


def register(group: click.Group) -> None:
    group.add_command(worker)

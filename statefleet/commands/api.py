"""``statefleet api``: serve the HTTP API with uvicorn (uvloop) from the environment.

The memory queue driver is process-local: an API process on it would queue events
no worker in another process ever sees. So it is refused unless ``--allow-memory``
says this one process is the whole demo.
"""

from __future__ import annotations

import click

__all__ = ["api", "register"]

MEMORY_WARNING = (
    "the memory queue driver is process-local: do not use it when the API and workers "
    "run in separate processes; they will not share queues. Set WORKFLOW_QUEUE_DRIVER "
    "(or REDIS_URL), or pass --allow-memory for a single-process demo."
)


@click.command()
@click.option("--host", envvar="STATEFLEET_API_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="STATEFLEET_API_PORT", default=8080, show_default=True, type=int)
@click.option("--allow-memory", is_flag=True, help="Accept the process-local memory queue.")
def api(host: str, port: int, allow_memory: bool) -> None:
    """Serve the v1 HTTP API (DATABASE_URL, WORKFLOW_QUEUE_DRIVER, STATEFLEET_ADMIN_KEY).

    With --allow-memory this one process also runs the engine (in-process backend).
    """
    import uvicorn

    from statefleet.api import create_app
    from statefleet.config import ConfigError, Settings
    from statefleet.engine.logging_setup import configure_logging
    from statefleet.engine.tracing import configure_tracing

    try:
        settings = Settings.load()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(settings.logging())
    configure_tracing(settings.tracing())
    if settings.database_url is None:
        raise click.ClickException("DATABASE_URL is not set")
    memory = settings.queue_driver == "memory"
    if memory and not allow_memory:
        raise click.ClickException(MEMORY_WARNING)
    if memory:
        click.echo(f"warning: {MEMORY_WARNING}", err=True)
    app = create_app(
        settings.api(),
        handlers=settings.handlers(),
        engine_settings=settings.engine(),
        run_engine=memory,
    )
    # log_config=None: uvicorn logs (access lines included) through configure_logging's setup.
    uvicorn.run(
        app, host=host, port=port, loop="uvloop", ws="none", log_config=None, access_log=True
    )


def register(group: click.Group) -> None:
    group.add_command(api)

"""``statefleet schedules create|ls|pause|resume|delete``: instances on a cron or a period.

A schedule starts an instance of a definition at each tick (docs/schedules.md); the
engine fires it, these commands only manage it through the API. The client commands'
plumbing (connection options, errors, tables, ``--json``) is shared with ``client_cmds``.
"""

from __future__ import annotations

import click

from statefleet.client import Schedule
from statefleet.commands.client_cmds import (
    CliError,
    _client,
    _connection_options,
    _echo_json,
    _echo_json_lines,
    _first,
    _json_object,
    _json_option,
    _limit_option,
    _table,
)

__all__ = ["register", "schedules"]


def _rule(schedule: Schedule) -> str:
    if schedule.cron is not None:
        return f"cron {schedule.cron} ({schedule.timezone})"
    return f"every {schedule.every}s"


def _show(schedule: Schedule, as_json: bool, verb: str) -> None:
    if as_json:
        _echo_json(schedule)
        return
    state = "paused" if schedule.paused else f"next {schedule.next_run_at.isoformat()}"
    click.echo(
        f"{verb} schedule {schedule.id}: {schedule.definition_key} {_rule(schedule)}, {state}"
    )


@click.group()
def schedules() -> None:
    """Start instances of a definition on a cron expression or every N seconds."""


@schedules.command("create")
@click.argument("key")
@click.option("--cron", metavar="EXPR", help="Cron expression, e.g. '0 9 * * MON-FRI'.")
@click.option("--every", type=click.IntRange(min=1), metavar="SECONDS", help="A period.")
@click.option(
    "--timezone",
    "--tz",
    "timezone",
    metavar="ZONE",
    help="IANA time zone of the cron expression [default: UTC].",
)
@click.option("--input", "input_json", metavar="JSON", help="Each instance's input (object).")
@click.option("--version", type=int, help="Pin a definition version (default: the latest).")
@click.option(
    "--overlap",
    type=click.Choice(["skip", "allow", "bufferOne"]),
    help="A tick while the previous instance still runs [default: skip].",
)
@click.option(
    "--catch-up",
    type=click.Choice(["skip", "all"]),
    help="Ticks missed while no engine ran: only the latest, or each [default: skip].",
)
@_json_option
@_connection_options
def schedules_create(
    key: str,
    cron: str | None,
    every: int | None,
    timezone: str | None,
    input_json: str | None,
    version: int | None,
    overlap: str | None,
    catch_up: str | None,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Start an instance of definition KEY at each tick of --cron or --every."""
    if (cron is None) == (every is None):
        raise CliError("give one of --cron EXPR and --every SECONDS")
    with _client(url, api_key) as client:
        schedule = client.create_schedule(
            key,
            cron=cron,
            every=every,
            timezone=timezone,
            input=_json_object(input_json, "--input"),
            version=version,
            overlap=overlap,
            catch_up=catch_up,
        )
    _show(schedule, as_json, "created")


@schedules.command("ls")
@_limit_option("At most this many (newest first).")
@_json_option
@_connection_options
def schedules_ls(limit: int, as_json: bool, url: str | None, api_key: str | None) -> None:
    """List schedules, newest first."""
    with _client(url, api_key) as client:
        pages = client.list_schedules(page_size=min(limit, 1000))
        found = _first(pages, limit)
    if as_json:
        _echo_json_lines(found)
        return
    _table(
        ("ID", "DEFINITION", "RULE", "OVERLAP", "STATE", "NEXT RUN", "LAST INSTANCE"),
        (
            (
                s.id,
                s.definition_key if s.version is None else f"{s.definition_key} v{s.version}",
                _rule(s),
                s.overlap,
                "paused" if s.paused else "active",
                s.next_run_at.isoformat(),
                s.last_instance_id,
            )
            for s in found
        ),
    )


@schedules.command("pause")
@click.argument("schedule_id", metavar="SCHEDULE_ID")
@_json_option
@_connection_options
def schedules_pause(schedule_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Pause a schedule: it starts nothing until resumed."""
    with _client(url, api_key) as client:
        schedule = client.pause_schedule(schedule_id)
    _show(schedule, as_json, "paused")


@schedules.command("resume")
@click.argument("schedule_id", metavar="SCHEDULE_ID")
@_json_option
@_connection_options
def schedules_resume(schedule_id: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Resume a schedule from its next tick (ticks missed while paused do not run)."""
    with _client(url, api_key) as client:
        schedule = client.resume_schedule(schedule_id)
    _show(schedule, as_json, "resumed")


@schedules.command("delete")
@click.argument("schedule_id", metavar="SCHEDULE_ID")
@_connection_options
def schedules_delete(schedule_id: str, url: str | None, api_key: str | None) -> None:
    """Delete a schedule; the instances it started keep running."""
    with _client(url, api_key) as client:
        client.delete_schedule(schedule_id)
    click.echo(f"deleted schedule {schedule_id}")


def register(group: click.Group) -> None:
    """Adds ``schedules`` to ``group`` (the ``statefleet`` CLI)."""
    group.add_command(schedules)

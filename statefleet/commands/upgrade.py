"""``statefleet upgrade``: move running instances to another version, after a dry run.

Also the fetching half of ``statefleet simulate --history ID``: a live instance's
events, read through the API, to replay offline on a spec file (docs/upgrades.md).
The client commands' plumbing (connection options, errors, tables) is shared with
``client_cmds``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import click

from statefleet.client import Client, Upgrade, UpgradeEntry
from statefleet.commands.client_cmds import (
    _client,
    _connection_options,
    _echo_json,
    _json_option,
    _parse_json,
    _table,
)
from statefleet.engine.runtime.replay import INIT_EVENT, is_replayed

__all__ = ["HistoryReplay", "fetch_history", "upgrade"]

#: Seconds between progress polls of an apply.
POLL_S = 0.5


def _state_map(pairs: tuple[str, ...]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise click.BadParameter(f"{pair!r} is not OLD=NEW", param_hint="--map")
        mapping[old] = new
    return mapping


def _entries(client: Client, report: Upgrade) -> Iterator[UpgradeEntry]:
    """Every entry of the report, page by page."""
    yield from report.items
    cursor = report.next_cursor
    while cursor is not None:
        page = client.get_upgrade(report.id, cursor=cursor, limit=1000)
        yield from page.items
        cursor = page.next_cursor


def _why(entry: UpgradeEntry) -> str:
    if entry.divergence:
        d = entry.divergence
        what = "context" if d.get("reason") == "context" else "state"
        return (
            f"seq {d.get('seq')} {d.get('event')}: {what} expected "
            f"{_short(d.get('expected'))}, got {_short(d.get('got'))}"
        )
    if entry.message:
        return entry.message
    moves = [f"{t.get('name')} {t.get('action')}" for t in entry.tasks if t.get("action")]
    return ", ".join(moves)


def _short(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


@click.command()
@click.argument("key", metavar="KEY")
@click.option("--from-version", type=click.IntRange(min=1), required=True, help="Version A.")
@click.option("--to-version", type=click.IntRange(min=1), required=True, help="Version B.")
@click.option(
    "--map",
    "pairs",
    metavar="OLD=NEW",
    multiple=True,
    help="A renamed or removed state of A and its counterpart in B; repeatable.",
)
@click.option(
    "--defaults",
    "defaults_json",
    metavar="JSON",
    help="Context fields B needs that A's instances may lack (a JSON object).",
)
@click.option(
    "--apply", "apply_", is_flag=True, help="Move the compatible instances (default: dry run)."
)
@click.option("--force", is_flag=True, help="With --apply, also move the diverged ones.")
@_json_option
@_connection_options
def upgrade(
    key: str,
    from_version: int,
    to_version: int,
    pairs: tuple[str, ...],
    defaults_json: str | None,
    apply_: bool,
    force: bool,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Replay every running instance of KEY on another version, and print the verdicts.

    Each instance is compatible (the replay ends where it is, with the same context),
    diverged (the replay leaves its path: where, and what differs), unmappable (its
    state has no counterpart; give --map) or error (a guard or expression fails on the
    new version; give --defaults). With --apply the compatible ones move (with --force
    the diverged ones too); the command waits until every move is done.
    """
    if force and not apply_:
        raise click.UsageError("--force moves instances: it needs --apply")
    state_map = _state_map(pairs)
    defaults = _parse_json(defaults_json, "--defaults") if defaults_json else None
    if defaults is not None and not isinstance(defaults, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--defaults")
    with _client(url, api_key) as client:
        report = client.upgrade(
            key,
            from_version=from_version,
            to_version=to_version,
            state_map=state_map or None,
            context_defaults=defaults,
            dry_run=not apply_,
            force=force,
        )
        while not report.finished:
            if not as_json:
                p = report.progress
                print(
                    f"\rmoving: {p.moved} moved, {p.skipped} skipped, {p.pending} pending",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(POLL_S)
            report = client.get_upgrade(report.id, limit=1000)
        if apply_ and not as_json:
            print(file=sys.stderr)
        entries = list(_entries(client, report))
    if as_json:
        data = report.model_dump(mode="json", by_alias=True)
        data["items"] = [e.model_dump(mode="json", by_alias=True) for e in entries]
        data["nextCursor"] = None
        _echo_json(data)
        return
    headers = ["INSTANCE", "VERDICT", "STATE", "DETAIL"] + (["OUTCOME"] if apply_ else [])
    _table(
        headers,
        (
            [e.instance_id, e.verdict, e.target_state, _why(e)] + ([e.outcome] if apply_ else [])
            for e in entries
        ),
    )
    c = report.counts
    click.echo(
        f"{report.total} instance(s): {c.compatible} compatible, {c.diverged} diverged, "
        f"{c.unmappable} unmappable, {c.error} error"
        + ("" if report.dry_run else f"; moved {report.progress.moved}")
        + ("" if report.dry_run else f", skipped {report.progress.skipped}")
        + (" (dry run: nothing moved; --apply to move)" if report.dry_run else "")
    )


class HistoryReplay:
    """A live instance's start input and the events it applied, in order.

    ``recorded`` holds, per event, its audit seq and the state it left the instance
    in, so a replay on another spec can say where it first went elsewhere.
    """

    def __init__(
        self,
        input: dict[str, Any],
        events: list[dict[str, Any]],
        recorded: list[tuple[int, Any]],
        init_state: Any,
    ) -> None:
        self.input = input
        self.events = events
        self.recorded = recorded
        self.init_state = init_state


def fetch_history(instance_id: str, url: str | None, api_key: str | None) -> HistoryReplay:
    """Reads the instance's audit log through the API (what ``--history`` replays)."""
    with _client(url, api_key) as client:
        entries = list(client.history(instance_id))
    if not entries or entries[0].type != INIT_EVENT:
        raise click.ClickException(f"instance {instance_id}: history has no {INIT_EVENT} entry")
    first = entries[0]
    events: list[dict[str, Any]] = []
    recorded: list[tuple[int, Any]] = []
    for entry in entries[1:]:
        if is_replayed(entry.type):
            events.append({"type": entry.type, "payload": entry.payload or {}})
            recorded.append((entry.seq, entry.state_after))
    payload = first.payload if isinstance(first.payload, dict) else {}
    return HistoryReplay(dict(payload), events, recorded, first.state_after)

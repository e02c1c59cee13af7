"""``statefleet config``: what a process started here and now would run with.

A deployment's configuration is spread over a Helm chart, a secret store and a shell
profile; this command shows the result of all of them after validation, with every
secret masked so the output can be shared when asking for help. It reads the same
:class:`statefleet.config.Settings` every other command does, so what it prints and
what they run with cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import click
import orjson

__all__ = ["config", "register"]

HEADER = ("VARIABLE", "VALUE", "SOURCE")
#: Shown for an unset value in the table, where an empty cell would misalign the eye.
UNSET = "-"


def _table(rows: Sequence[tuple[str, str, str]]) -> str:
    shown = [HEADER, *((variable, value or UNSET, source) for variable, value, source in rows)]
    widths = [max(len(row[column]) for row in shown) for column in range(2)]
    return "\n".join(
        f"{variable:<{widths[0]}}  {value:<{widths[1]}}  {source}".rstrip()
        for variable, value, source in shown
    )


@click.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON array of {variable, value, source}."
)
def config(as_json: bool) -> None:
    """Print every setting from the environment (secrets masked) and where it came from.

    SOURCE is `env` for a variable set in the environment, `default` otherwise. An
    invalid value exits 1 with every problem named.
    """
    from statefleet.config import ConfigError, Settings

    try:
        settings = Settings.load()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    rows = settings.describe()
    if as_json:
        records = [
            {"variable": variable, "value": value, "source": source}
            for variable, value, source in rows
        ]
        click.echo(orjson.dumps(records).decode())
    else:
        click.echo(_table(rows))


def register(group: click.Group) -> None:
    group.add_command(config)

"""Named SQL queries read from the ``.sql`` files shipped in this package.

SQL lives in ``.sql`` files so it can be read, diffed and run in ``psql`` as SQL, not
as Python strings. A file holds several queries, each introduced by a ``-- name: <name>``
line; the text up to the next such line (comments included) is the query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

__all__ = ["load_queries", "parse_queries"]

_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>\S+)\s*$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def parse_queries(text: str, *, source: str = "<sql>") -> Mapping[str, str]:
    """Split ``text`` into its named queries.

    Args:
        text: SQL with ``-- name: <name>`` lines; text before the first one is a preamble
            and is dropped.
        source: where ``text`` came from, for error messages.

    Returns:
        A read-only mapping from name to query text, in file order.

    Raises:
        ValueError: a name is not a lower-case identifier, appears twice, or has no query.
    """
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _NAME_LINE.match(line)
        if match is None:
            if current is not None:
                current.append(line)
            continue
        name = match["name"]
        if not _IDENTIFIER.match(name):
            raise ValueError(f"{source}:{number}: query name {name!r} is not an identifier")
        if name in queries:
            raise ValueError(f"{source}:{number}: query {name!r} is defined twice")
        current = queries[name] = []
    result: dict[str, str] = {}
    for name, lines in queries.items():
        body = "\n".join(lines).strip()
        if not _has_code(body):
            raise ValueError(f"{source}: query {name!r} is empty")
        result[name] = body + "\n"
    return MappingProxyType(result)


def load_queries(filename: str) -> Mapping[str, str]:
    """Read the named queries of ``sql/<filename>`` in this package.

    Read through :mod:`importlib.resources` so it works the same from a checkout, an
    editable install and a wheel.
    """
    resource = resources.files(__package__ or __name__).joinpath("sql", filename)
    return parse_queries(resource.read_text(encoding="utf-8"), source=f"sql/{filename}")


def _has_code(body: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("--") for line in body.splitlines())

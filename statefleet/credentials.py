"""The state dir of ``statefleet up`` and the credentials file it keeps there.

``up`` writes ``$STATEFLEET_HOME/credentials.json`` (mode 0600) on every start: the
URL it serves, the ``default`` tenant and its API key, and the admin key of its
``/v1/admin`` routes. The client and the CLI read it so that a newcomer's shell needs
no ``export`` lines: with no URL given they talk to that server, and with no key given
they use its keys, but only when they talk to the server the file names (a local key
is never sent to another host).

This module is light on purpose (standard library only): :mod:`statefleet.client`
imports it, and a client must not pull in the server's dependencies.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import IO, Any
from urllib.parse import urlsplit

from statefleet.engine.record import record

__all__ = [
    "CREDENTIALS_FILE",
    "Credentials",
    "credentials_path",
    "read_credentials",
    "same_server",
    "state_dir",
    "write_credentials",
]

CREDENTIALS_FILE = "credentials.json"
#: Names of this machine's loopback interface; any of them reaches a local ``up``.
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@record
class Credentials:
    """What ``up`` wrote; any field may be missing from an older or edited file."""

    url: str | None = None
    tenant_id: str | None = None
    api_key: str | None = None
    admin_key: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "tenantId": self.tenant_id,
            "apiKey": self.api_key,
            "adminKey": self.admin_key,
        }


def state_dir(env: Mapping[str, str] | None = None) -> pathlib.Path:
    """``$STATEFLEET_HOME``, default ``~/.statefleet``: where ``up`` keeps its data."""
    env = os.environ if env is None else env
    raw = env.get("STATEFLEET_HOME", "").strip()
    return pathlib.Path(raw).expanduser() if raw else pathlib.Path.home() / ".statefleet"


def credentials_path(env: Mapping[str, str] | None = None) -> pathlib.Path:
    """``$STATEFLEET_HOME/credentials.json``."""
    return state_dir(env) / CREDENTIALS_FILE


def read_credentials(path: pathlib.Path | None = None) -> Credentials | None:
    """The file's contents, or None when it is missing or not the JSON object ``up`` writes."""
    try:
        path = credentials_path() if path is None else path
        data = json.loads(path.read_text())
    except (OSError, ValueError, RuntimeError):  # RuntimeError: no home directory at all
        return None
    if not isinstance(data, dict):
        return None

    def text(name: str) -> str | None:
        value = data.get(name)
        return value.strip() or None if isinstance(value, str) else None

    return Credentials(text("url"), text("tenantId"), text("apiKey"), text("adminKey"))


def write_credentials(path: pathlib.Path, credentials: Credentials) -> None:
    """Writes ``credentials`` readable by the owner only, atomically."""
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    stream: IO[str]
    with os.fdopen(fd, "w") as stream:
        json.dump(credentials.as_json(), stream, indent=2)
        stream.write("\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def same_server(url: str, other: str) -> bool:
    """Whether two base URLs name one server (``localhost`` and ``127.0.0.1`` are one)."""

    def key(value: str) -> tuple[str, str, int | None, str]:
        parts = urlsplit(value.strip())
        host = (parts.hostname or "").lower()
        scheme = parts.scheme.lower()
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:
            port = None
        return scheme, "loopback" if host in _LOOPBACK else host, port, parts.path.rstrip("/")

    return key(url) == key(other)

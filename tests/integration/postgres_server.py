"""A throwaway PostgreSQL server for the test session.

Started from the machine's ``initdb``/``pg_ctl`` in a temporary directory, on a free
localhost port, with durability switched off (fsync and friends): its data is thrown
away at the end of the session, so crash safety buys nothing and costs seconds.

``initdb`` refuses to run as root, and CI and the development machines run everything
as root. As root, the server therefore runs as an unprivileged system account
(``statefleet-pg`` by default, created on demand with ``useradd --system`` when the
machine has only root), and the temporary directory is handed to that account.
The process switch uses :mod:`subprocess`'s ``user``/``group`` arguments, so no
``su``/``runuser`` configuration (PAM, login shells) is involved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pathlib
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator

__all__ = ["PostgresServer", "PostgresUnavailable", "running_postgres"]

#: The account the server runs as when the tests run as root.
DEFAULT_ACCOUNT = "statefleet-pg"
#: AF_UNIX socket paths are limited to 107 bytes on Linux; the socket file name is
#: ``.s.PGSQL.<port>``, so the directory must leave room for it.
_MAX_SOCKET_DIR = 80


class PostgresUnavailable(RuntimeError):
    """A server could not be started here; the message says why."""


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    """A running server: connect to ``dsn`` (superuser ``postgres``, trust auth)."""

    dsn: str
    port: int
    directory: pathlib.Path


@dataclasses.dataclass(frozen=True)
class _Account:
    """Who runs initdb and the server: ``None`` ids mean the current user."""

    uid: int | None
    gid: int | None
    name: str


@contextlib.contextmanager
def running_postgres(*, start_timeout: float = 60.0) -> Iterator[PostgresServer]:
    """Start a throwaway server, yield it, then stop it and delete its files.

    Raises:
        PostgresUnavailable: no ``initdb``/``pg_ctl`` was found, the account could not
            be set up, or the server did not start (the message includes its log).
    """
    binaries = _find_binaries()
    account = _account()
    directory = _make_directory(account)
    data = directory / "data"
    log = directory / "postgres.log"
    started = False
    try:
        _run(
            account,
            [
                binaries["initdb"],
                "--pgdata",
                str(data),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=directory,
        )
        for attempt in range(3):
            port = _free_port()
            _configure(data, port=port, socket_dir=directory)
            result = _run(
                account,
                [
                    binaries["pg_ctl"],
                    "start",
                    "--pgdata",
                    str(data),
                    "--log",
                    str(log),
                    "--wait",
                    "--timeout",
                    str(int(start_timeout)),
                    "--silent",
                ],
                cwd=directory,
                check=False,
            )
            if result.returncode == 0:
                started = True
                break
            # Another process may have taken the port between probing and binding; retry.
            if attempt == 2 or "could not bind" not in _tail(log):
                raise PostgresUnavailable(
                    f"pg_ctl start failed ({result.returncode}): {result.stderr.strip()}\n"
                    f"server log:\n{_tail(log)}"
                )
        yield PostgresServer(
            dsn=f"postgresql://postgres@127.0.0.1:{port}/postgres",
            port=port,
            directory=directory,
        )
    finally:
        if started:
            _run(
                account,
                [binaries["pg_ctl"], "stop", "--pgdata", str(data), "--mode", "fast", "--wait"],
                cwd=directory,
                check=False,
            )
        shutil.rmtree(directory, ignore_errors=True)


def _find_binaries() -> dict[str, str]:
    """``initdb`` and ``pg_ctl`` from PATH, else from Debian's versioned layout."""
    found: dict[str, str] = {}
    fallback = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for name in ("initdb", "pg_ctl"):
        path = shutil.which(name) or next(
            (p for d in fallback if os.access(p := os.path.join(d, name), os.X_OK)), None
        )
        if path is None:
            raise PostgresUnavailable(
                f"{name} not found on PATH or under /usr/lib/postgresql/*/bin; install the "
                "PostgreSQL server (Debian: postgresql) or set DATABASE_URL"
            )
        found[name] = path
    return found


def _version_key(directory: str) -> tuple[int, ...]:
    version = pathlib.Path(directory).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _account() -> _Account:
    """The account to run the server as: ourselves, or an unprivileged one when root."""
    if os.geteuid() != 0:
        return _Account(uid=None, gid=None, name=pwd.getpwuid(os.geteuid()).pw_name)
    name = os.environ.get("STATEFLEET_PG_ACCOUNT", DEFAULT_ACCOUNT)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_account(name)
    if entry.pw_uid == 0:
        raise PostgresUnavailable(f"account {name!r} is root; initdb refuses to run as root")
    return _Account(uid=entry.pw_uid, gid=entry.pw_gid, name=name)


def _create_account(name: str) -> pwd.struct_passwd:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    useradd = shutil.which("useradd", path=search)
    if useradd is None:
        raise PostgresUnavailable(
            f"running as root, account {name!r} does not exist and useradd is not available "
            "to create it; create an unprivileged account and set STATEFLEET_PG_ACCOUNT"
        )
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", name],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        # Exit code 9 means another session created it meanwhile, which is as good.
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresUnavailable(
            f"useradd {name} failed ({result.returncode}): {result.stderr.strip()}"
        ) from None


def _make_directory(account: _Account) -> pathlib.Path:
    """A fresh directory the account owns, reachable by it and short enough for a socket."""
    candidates = [tempfile.gettempdir(), "/tmp"]
    for base in dict.fromkeys(candidates):
        if len(base) > _MAX_SOCKET_DIR - 20 or not _reachable_by_others(base, account):
            continue
        directory = pathlib.Path(tempfile.mkdtemp(prefix="statefleet-pg-", dir=base))
        if account.uid is not None and account.gid is not None:
            os.chown(directory, account.uid, account.gid)
        return directory
    raise PostgresUnavailable(
        f"no temporary directory among {candidates} is reachable by account {account.name!r} "
        "with a path short enough for a unix socket"
    )


def _reachable_by_others(path: str, account: _Account) -> bool:
    """Whether every ancestor of ``path`` lets the (non-root) account traverse it."""
    if account.uid is None:
        return os.access(path, os.W_OK | os.X_OK)
    current = pathlib.Path(path).resolve()
    for directory in [current, *current.parents]:
        mode = os.stat(directory).st_mode
        if not mode & stat.S_IXOTH:
            return False
    return True


def _configure(data: pathlib.Path, *, port: int, socket_dir: pathlib.Path) -> None:
    # Appended after initdb's defaults, so these win; the file keeps its owner.
    settings = {
        "port": str(port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{socket_dir}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "logging_collector": "off",
    }
    with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# statefleet test server\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run(
    account: _Account, command: list[str], *, cwd: pathlib.Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(cwd),
        "LC_ALL": "C",
        "TZ": "UTC",
    }
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        user=account.uid,
        group=account.gid,
        extra_groups=[] if account.uid is not None else None,
        umask=0o077,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise PostgresUnavailable(
            f"{pathlib.Path(command[0]).name} failed ({result.returncode}) as "
            f"{account.name!r} after {time.monotonic() - started:.1f}s: "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result


def _tail(log: pathlib.Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"

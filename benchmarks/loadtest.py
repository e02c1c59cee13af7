"""``python -m benchmarks.loadtest``: Locust against a fresh ``statefleet up``, end to end.

Starts ``statefleet up`` as a subprocess on a new temporary ``STATEFLEET_HOME`` (its own
embedded Postgres, local Ray, memory queue and mail sink; ``DATABASE_URL`` and the other
variables that would point it elsewhere are dropped) and a free port, takes the
``default`` tenant's key from the ``export STATEFLEET_API_KEY=`` line it prints, waits
for ``/readyz``, and runs ``benchmarks/locustfile.py`` headless against it. Then it stops
the server with SIGTERM and checks that none of its processes (Postgres, Ray) outlive
it. It prints requests, requests/s, failures and p50/p95/p99 per endpoint and overall
(Locust's ``_stats.csv``) and writes them to ``benchmarks/results/loadtest-*.json``
(or ``--out``).

Locust runs on the same machine as the server it loads, so on a small machine the
figures are those of both sharing the cores. Its percentiles come from its histogram:
exact below 100 ms, rounded to 10 ms below 1 s and to 100 ms above.

Exit status 0 needs zero failed requests, at least one request, no exception in the
locustfile, a clean server stop and no stray process; 1 otherwise (the results are
written either way), 2 when the server or Locust could not run at all.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import psutil

from benchmarks import common, machine_info

LOCUSTFILE = pathlib.Path(__file__).with_name("locustfile.py")
STATEFLEET_UP = [sys.executable, "-m", "statefleet", "up", "--host", "127.0.0.1"]
#: Variables that would point ``statefleet up`` elsewhere than its embedded defaults.
_OVERRIDES = (
    "DATABASE_URL",
    "WORKFLOW_QUEUE_DRIVER",
    "REDIS_URL",
    "APP_ENV",
    "RAY_ADDRESS",
    "STATEFLEET_SMTP_HOST",
    "STATEFLEET_SMTP_PORT",
    "STATEFLEET_API_HOST",
    "STATEFLEET_API_PORT",
)
READY_TIMEOUT = 300.0
STOP_TIMEOUT = 120.0
#: Seconds a stopped server's descendants get to exit before they count as strays.
STRAY_TIMEOUT = 60.0
#: Seconds Locust gives a user to finish its task after the run time (--stop-timeout).
LOCUST_STOP_TIMEOUT = 10


def timespan(text: str) -> int:
    """Seconds of a Locust run time: ``60``, ``90s``, ``2m``, ``1h30m``..."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"not a run time: {text!r} (e.g. 60s, 2m, 1h30m)")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise argparse.ArgumentTypeError(f"run time must be positive: {text!r}")
    return total


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.loadtest",
        description="Locust against a fresh `statefleet up` (see benchmarks/locustfile.py).",
    )
    parser.add_argument("--users", "-u", type=int, default=20, help="simulated users")
    parser.add_argument("--spawn-rate", "-r", type=float, default=10.0, help="users started/s")
    parser.add_argument("--run-time", "-t", default="60s", help="e.g. 60s, 2m (default 60s)")
    parser.add_argument(
        "--out", type=pathlib.Path, default=None, help="results directory (benchmarks/results)"
    )
    return parser


# --- the server ----------------------------------------------------------------


class TreeWatcher:
    """Records the descendants of ``pid`` (with start times) every 0.2 s until stopped.

    Ray's head processes and Postgres are descendants of ``statefleet up``, so this finds
    them without matching process names (other servers on the machine are not ours).
    """

    def __init__(self, pid: int) -> None:
        self.seen: dict[int, float] = {}
        self._root = pid
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(0.2)

    def sample(self) -> None:
        try:
            children = psutil.Process(self._root).children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault(child.pid, child.create_time())

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def alive(self) -> list[psutil.Process]:
        found = []
        for pid, created in self.seen.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() == created and process.status() != "zombie":
                    found.append(process)
            except psutil.Error:
                continue
        return found


class Server:
    """``statefleet up`` on ``home`` and ``port``, output in ``log``."""

    def __init__(self, home: pathlib.Path, port: int, log: pathlib.Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES}
        env |= {"STATEFLEET_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.log = log
        with log.open("wb") as out:
            # A session of its own: a Ctrl-C in the terminal reaches this script, which
            # then stops the server in order, rather than everything at once.
            self.process = subprocess.Popen(
                [*STATEFLEET_UP, "--port", str(port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.watcher = TreeWatcher(self.process.pid)

    def output(self, tail: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> tuple[str, str]:
        """The server's URL and the ``default`` tenant's API key, once ``/readyz`` is 200."""
        deadline = time.monotonic() + timeout
        exports: dict[str, str] = {}
        while len(exports) < 2:
            for line in self.log.read_text(errors="replace").splitlines():
                for name in ("STATEFLEET_URL", "STATEFLEET_API_KEY"):
                    if line.startswith(f"export {name}="):
                        exports[name] = line.split("=", 1)[1].strip()
            self._check(deadline)
            time.sleep(0.2)
        url = exports["STATEFLEET_URL"]
        while not _ready(url):
            self._check(deadline)
            time.sleep(0.2)
        return url, exports["STATEFLEET_API_KEY"]

    def _check(self, deadline: float) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"statefleet up exited with {self.process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("statefleet up was not ready in time")

    def stop(self) -> tuple[int, list[str]]:
        """SIGTERM, wait; returns the exit code and the descendants that outlived it.

        Survivors are killed (they are this server's: same pid and start time) so that
        nothing is left running either way; they are still reported.
        """
        self.watcher.sample()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.watcher.stop()
        deadline = time.monotonic() + STRAY_TIMEOUT
        strays = self.watcher.alive()
        while strays and time.monotonic() < deadline:
            time.sleep(0.5)
            strays = self.watcher.alive()
        described = []
        for process in strays:
            with contextlib.suppress(psutil.Error):
                described.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
                process.kill()
        return code, described


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# --- Locust --------------------------------------------------------------------


def run_locust(
    url: str, api_key: str, args: argparse.Namespace, seconds: int, prefix: pathlib.Path
) -> int:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        args.run_time,
        "--stop-timeout",
        str(LOCUST_STOP_TIMEOUT),
        "--host",
        url,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    env = {**os.environ, "STATEFLEET_URL": url, "STATEFLEET_API_KEY": api_key}
    log = prefix.with_name(prefix.name + ".log")
    with log.open("wb") as out:
        done = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=seconds + LOCUST_STOP_TIMEOUT + 120,
            check=False,
        )
    return done.returncode


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:  # "N/A" when an endpoint had no successful request
        return 0.0


def read_stats(path: pathlib.Path) -> list[dict[str, Any]]:
    """One row per endpoint, then the ``Aggregated`` row, from Locust's ``_stats.csv``."""
    rows = []
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            name = raw["Name"] if raw["Name"] == "Aggregated" else f"{raw['Type']} {raw['Name']}"
            rows.append(
                {
                    "name": name,
                    "requests": int(raw["Request Count"]),
                    "failures": int(raw["Failure Count"]),
                    "rps": round(_number(raw["Requests/s"]), 2),
                    "mean_ms": round(_number(raw["Average Response Time"]), 2),
                    "p50_ms": _number(raw["50%"]),
                    "p95_ms": _number(raw["95%"]),
                    "p99_ms": _number(raw["99%"]),
                    "max_ms": round(_number(raw["Max Response Time"]), 2),
                }
            )
    return rows


def read_failures(prefix: pathlib.Path) -> list[str]:
    """Failed requests by error, then exceptions raised in the users' code, if any."""
    lines = []
    failures = prefix.with_name(prefix.name + "_failures.csv")
    if failures.exists():
        with failures.open(newline="") as handle:
            lines += [
                f"{row['Occurrences']:>6} x {row['Method']} {row['Name']}: {row['Error']}"
                for row in csv.DictReader(handle)
            ]
    exceptions = prefix.with_name(prefix.name + "_exceptions.csv")
    if exceptions.exists():
        with exceptions.open(newline="") as handle:
            lines += [
                f"{row['Count']:>6} x exception in the locustfile: {row['Message']}\n"
                f"{row['Traceback']}"
                for row in csv.DictReader(handle)
            ]
    return lines


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    width = max([len(r["name"]) for r in rows] + [8])
    lines = [
        f"{'endpoint':<{width}} {'requests':>9} {'req/s':>8} {'failures':>8} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    ]
    for row in rows:
        lines.append(
            f"{row['name']:<{width}} {row['requests']:>9,} {row['rps']:>8.1f} "
            f"{row['failures']:>8,} {row['p50_ms']:>7.0f} {row['p95_ms']:>7.0f} "
            f"{row['p99_ms']:>7.0f} {row['max_ms']:>7.0f}"
        )
    return lines


def figures_of(rows: Sequence[dict[str, Any]], strays: int) -> dict[str, float]:
    """The aggregated figures, then ``<endpoint>: <figure>`` for each endpoint."""
    figures: dict[str, float] = {}
    for row in rows:
        fields = {k: float(v) for k, v in row.items() if k != "name"}
        if row["name"] == "Aggregated":
            figures = fields | figures
        else:
            figures |= {f"{row['name']}: {k}": v for k, v in fields.items()}
    figures["stray_processes"] = float(strays)
    return figures


# --- main ----------------------------------------------------------------------


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    from statefleet.embedded import free_port

    args = build_parser().parse_args(argv)
    try:
        seconds = timespan(args.run_time)
    except argparse.ArgumentTypeError as error:
        build_parser().error(str(error))
    info = machine_info.describe()
    with tempfile.TemporaryDirectory(prefix="statefleet-loadtest-") as raw:
        work = pathlib.Path(raw)
        # As root, Postgres runs as an unprivileged account that must reach its data dir.
        work.chmod(0o711)
        prefix = work / "locust"
        _say(f"starting statefleet up (STATEFLEET_HOME={work / 'home'})")
        began = time.monotonic()
        server = Server(work / "home", free_port(), work / "up.log")
        locust_code: int | None = None
        try:
            url, api_key = server.wait_ready()
            _say(f"ready at {url} after {time.monotonic() - began:.1f} s")
            _say(
                f"locust: {args.users} users, {args.spawn_rate:g}/s, {args.run_time} "
                f"(+ up to {LOCUST_STOP_TIMEOUT} s for the last tasks)"
            )
            locust_code = run_locust(url, api_key, args, seconds, prefix)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            _say(f"error: {error}")
        finally:
            _say("stopping statefleet up")
            server_code, strays = server.stop()
        stats = prefix.with_name("locust_stats.csv")
        locust_log = prefix.with_name("locust.log")
        if locust_code not in (0, 1) or not stats.exists():
            if locust_code is not None:
                _say(f"locust exited with {locust_code}")
            _say("statefleet up output (last lines):\n" + server.output())
            if locust_log.exists():
                _say("locust output:\n" + locust_log.read_text(errors="replace")[-4000:])
            return 2
        rows = read_stats(stats)
        failures = read_failures(prefix)
        cpu_warning = "CPU usage above" in locust_log.read_text(errors="replace")

    total = next(r for r in rows if r["name"] == "Aggregated")
    lines = table(rows)
    if failures:
        lines += ["failures:", *failures]
    if cpu_warning:
        lines.append("note: Locust warned that its CPU usage was above 90%: it may be the limit")
    if server_code != 0:
        lines.append(f"statefleet up exited with {server_code} (expected 0)")
    if strays:
        lines += ["processes left after the server stopped (killed):", *strays]
    parameters = {
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "run_time": args.run_time,
        "locustfile": "benchmarks/locustfile.py",
    }
    common.finish("loadtest", info, parameters, figures_of(rows, len(strays)), lines, args.out)
    # Locust exits with 1 on failed requests and on exceptions in the locustfile alike.
    ok = (
        locust_code == 0
        and total["failures"] == 0
        and total["requests"] > 0
        and server_code == 0
        and not strays
    )
    if not ok:
        _say(
            f"FAILED: {total['failures']} failed request(s) of {total['requests']}"
            + (f", locust exit {locust_code}" if locust_code else "")
            + (f", server exit {server_code}" if server_code else "")
            + (f", {len(strays)} stray process(es)" if strays else "")
        )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the server was stopped on the way out
        sys.exit(130)

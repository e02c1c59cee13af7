"""CPU seconds per role (pool actors, shard actors, workers, Postgres, ...) over a run.

A throughput figure on a small machine moves 10-20% from hour to hour with the
machine's own speed, and says nothing of where the time went. The cluster shape is a
dozen process trees (Ray starts its actors under its own daemons, not under the
benchmark), so this reads every process on the machine with psutil at the start and
at the end of the measured window and sums each one's user and system CPU by what it
is, told by its command line. It assumes the machine runs nothing else of weight
(the benchmarks' premise anyway); whatever matches no role is reported as "other".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

__all__ = ["ROLES", "CpuMeter", "CpuReport", "role_of"]

#: (role, substrings of the command line that mark it), first match wins: Ray names an
#: actor's process ``ray::<class>``, and every other Ray daemon mentions ray.
ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pool actors", ("ray::PoolActor",)),
    ("shard actors", ("ray::ShardActor",)),
    ("workers", ("statefleet worker",)),
    ("api", ("statefleet api",)),
    ("smtp sink", ("statefleet.mailsink",)),
    ("postgres", ("postgres",)),
    ("redis", ("redis-server",)),
    ("ray daemons", ("ray", "gcs_server", "raylet")),
)


def role_of(command_line: str, *, benchmark_pid: int | None = None, pid: int = -1) -> str:
    """The role of a process, from its command line (the benchmark itself by pid)."""
    if benchmark_pid is not None and pid == benchmark_pid:
        return "benchmark client"
    for role, marks in ROLES:
        if any(mark in command_line for mark in marks):
            return role
    return "other"


@dataclass(frozen=True, slots=True)
class CpuReport:
    seconds: float
    by_role: dict[str, float]
    #: Share of the machine's CPU capacity (cores x seconds) that was busy.
    busy: float

    def line(self, instances: int) -> str:
        """``CPU by role over 20.0 s (...): pool actors 12.8 s (642 us), ...; the machine
        98% busy``: roles by CPU, most first, per instance in brackets."""
        parts = [
            f"{role} {cpu:.1f} s ({cpu * 1e6 / instances:,.0f} us)"
            for role, cpu in sorted(self.by_role.items(), key=lambda kv: -kv[1])
            if cpu >= 0.05
        ]
        return (
            f"CPU by role over {self.seconds:.1f} s (per instance in brackets): "
            + ", ".join(parts)
            + f"; the machine {self.busy:.0%} busy"
        )

    def figures(self) -> dict[str, float]:
        """Flat figures for the JSON result: ``cpu_s_pool_actors`` and so on."""
        found = {
            f"cpu_s_{role.replace(' ', '_')}": round(cpu, 2) for role, cpu in self.by_role.items()
        }
        return found | {"cpu_busy": round(self.busy, 3)}


_Key = tuple[int, float]  # (pid, create time): a pid reused by a new process is a new key


class CpuMeter:
    """``start()`` before the measured window, ``stop()`` after it (also kept as ``report``)."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._before: dict[_Key, float] = {}
        self._machine_before = 0.0
        self._wall_before = 0.0
        self.report = CpuReport(seconds=0.0, by_role={}, busy=0.0)

    def start(self) -> None:
        self._before = {key: cpu for key, cpu, _ in _processes()}
        self._machine_before = _machine_busy()
        self._wall_before = time.monotonic()

    def stop(self) -> CpuReport:
        seconds = time.monotonic() - self._wall_before
        by_role: dict[str, float] = {}
        for key, cpu, command_line in _processes():
            used = cpu - self._before.get(key, 0.0)
            if used > 0:
                role = role_of(command_line, benchmark_pid=self._pid, pid=key[0])
                by_role[role] = by_role.get(role, 0.0) + used
        cores = psutil.cpu_count() or 1
        busy = (_machine_busy() - self._machine_before) / (seconds * cores) if seconds else 0.0
        self.report = CpuReport(seconds=seconds, by_role=by_role, busy=busy)
        return self.report


def _processes() -> Iterable[tuple[_Key, float, str]]:
    for process in psutil.process_iter(["cmdline", "name", "create_time", "cpu_times"]):
        info = process.info
        times = info["cpu_times"]
        if times is None or info["create_time"] is None:
            continue  # gone, or not ours to read
        command_line = " ".join(info["cmdline"] or [info["name"] or ""])
        yield (process.pid, info["create_time"]), times.user + times.system, command_line


def _machine_busy() -> float:
    """CPU seconds the machine spent busy since boot (guest time is inside user time)."""
    times = psutil.cpu_times()._asdict()
    idle = ("idle", "iowait", "guest", "guest_nice")
    return float(sum(value for name, value in times.items() if name not in idle))

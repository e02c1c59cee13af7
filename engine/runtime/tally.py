"""What shards and pools did, counted where they run and carried home in their replies.

Shards and pools run in Ray actors, whose counters a Prometheus registry in the API
process never saw: ``statefleet_events_total`` stayed empty under ``up`` and
``worker``. Each host now counts into its own :class:`Tally` (the runtime's observer
port) and hands over what it counted since its last reply with every reply
(``ShardReply.tally`` / ``PoolReply.tally``); the engine loop adds those deltas into its
own tally, which the process's ``/metrics`` exposes. No extra call, no polling, and the
engine's totals only grow: an actor that restarts loses only what it had not yet
handed over.

Plain data throughout (dicts of tuples and ints), so a delta pickles cheaply. The
histogram buckets are Prometheus' defaults. :meth:`Tally.to_json` and
:meth:`Tally.from_json` turn a tally into JSON data and back: each engine loop stores its
cumulative tally in ``engine_tallies`` (``tally_store.py``), and a process that runs no
engine (``statefleet api``) shows the sum of those rows.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statefleet.engine.runtime.instances import ApplyOutcome

__all__ = ["BUCKETS", "Histogram", "Tally"]

#: Upper bounds (seconds) of the latency buckets; +Inf is implied.
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)


@dataclass(slots=True)
class Histogram:
    """Observations per bucket (not cumulative; the last one is +Inf), their sum."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def add(self, other: Histogram) -> None:
        for index, count in enumerate(other.buckets):
            self.buckets[index] += count
        self.total += other.total

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def to_json(self) -> dict[str, Any]:
        return {"buckets": list(self.buckets), "total": self.total}

    @classmethod
    def from_json(cls, data: Any) -> Histogram:
        """Raises ``ValueError`` for data that is not a histogram over :data:`BUCKETS`."""
        buckets = data["buckets"]
        if len(buckets) != len(BUCKETS) + 1:
            raise ValueError(f"a histogram has {len(BUCKETS) + 1} buckets, not {len(buckets)}")
        return cls([_count(n) for n in buckets], float(data["total"]))


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"a count is a non-negative integer, not {value!r}")
    return value


@dataclass(slots=True)
class Tally:
    """Counters and latencies of one host, or the sum of many (the engine loop's).

    Implements the runtime's observer port (``events_applied``, ``task_finished``).
    """

    #: Events by outcome (``applied``, ``duplicate``, ``not_running``, ...).
    events: dict[str, int] = field(default_factory=dict)
    #: Time to apply and commit one batch of events.
    step: Histogram = field(default_factory=Histogram)
    #: Task jobs by (task type, outcome).
    task_runs: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Time to claim, run and finish one attempt, by task type.
    task_seconds: dict[str, Histogram] = field(default_factory=dict)
    #: AI decisions by outcome (``emitted``, ``rejected``).
    ai_decisions: dict[str, int] = field(default_factory=dict)
    #: Due held tasks an admission pass left waiting because of a limit, by task type
    #: (a task that waits through several passes counts once per pass).
    throttled: dict[str, int] = field(default_factory=dict)
    #: Held work the admitter handed on, by kind (``event``, ``task``).
    admitted: dict[str, int] = field(default_factory=dict)

    def events_applied(self, outcomes: Sequence[ApplyOutcome], seconds: float) -> None:
        for outcome in outcomes:
            self.events[outcome.outcome] = self.events.get(outcome.outcome, 0) + 1
        self.step.observe(seconds)

    def task_finished(self, task_type: str, outcome: str, seconds: float) -> None:
        key = (task_type, outcome)
        self.task_runs[key] = self.task_runs.get(key, 0) + 1
        self.task_seconds.setdefault(task_type, Histogram()).observe(seconds)

    def ai_decided(self, outcome: str) -> None:
        self.ai_decisions[outcome] = self.ai_decisions.get(outcome, 0) + 1

    def count_throttled(self, task_type: str, count: int = 1) -> None:
        self.throttled[task_type] = self.throttled.get(task_type, 0) + count

    def count_admitted(self, kind: str, count: int) -> None:
        self.admitted[kind] = self.admitted.get(kind, 0) + count

    def add(self, other: Tally) -> None:
        """Adds ``other``'s counts to these (the engine loop, per reply)."""
        for name, count in other.events.items():
            self.events[name] = self.events.get(name, 0) + count
        self.step.add(other.step)
        for key, count in other.task_runs.items():
            self.task_runs[key] = self.task_runs.get(key, 0) + count
        for task_type, histogram in other.task_seconds.items():
            self.task_seconds.setdefault(task_type, Histogram()).add(histogram)
        for name, count in other.ai_decisions.items():
            self.ai_decisions[name] = self.ai_decisions.get(name, 0) + count
        for name, count in other.throttled.items():
            self.throttled[name] = self.throttled.get(name, 0) + count
        for name, count in other.admitted.items():
            self.admitted[name] = self.admitted.get(name, 0) + count

    def to_json(self) -> dict[str, Any]:
        """JSON data (objects, lists, numbers); ``le`` names the bucket bounds used."""
        return {
            "le": list(BUCKETS),
            "events": dict(self.events),
            "step": self.step.to_json(),
            "task_runs": [
                {"type": task_type, "outcome": outcome, "count": count}
                for (task_type, outcome), count in self.task_runs.items()
            ],
            "task_seconds": {name: h.to_json() for name, h in self.task_seconds.items()},
            "ai_decisions": dict(self.ai_decisions),
            "throttled": dict(self.throttled),
            "admitted": dict(self.admitted),
        }

    @classmethod
    def from_json(cls, data: Any) -> Tally:
        """The tally :meth:`to_json` gave; raises ``ValueError`` for anything else
        (other bucket bounds included: such a tally cannot be added to these)."""
        try:
            if [float(b) for b in data.get("le", BUCKETS)] != list(BUCKETS):
                raise ValueError("the tally was counted with other histogram buckets")
            return cls(
                events={str(k): _count(v) for k, v in data["events"].items()},
                step=Histogram.from_json(data["step"]),
                task_runs={
                    (str(run["type"]), str(run["outcome"])): _count(run["count"])
                    for run in data["task_runs"]
                },
                task_seconds={
                    str(k): Histogram.from_json(v) for k, v in data["task_seconds"].items()
                },
                ai_decisions={str(k): _count(v) for k, v in data["ai_decisions"].items()},
                # Absent from tallies stored before these counters existed.
                throttled={str(k): _count(v) for k, v in data.get("throttled", {}).items()},
                admitted={str(k): _count(v) for k, v in data.get("admitted", {}).items()},
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a tally: {error!r}") from None

    def take(self) -> Tally:
        """What was counted since the last ``take``, and a fresh start."""
        taken = Tally(
            self.events,
            self.step,
            self.task_runs,
            self.task_seconds,
            self.ai_decisions,
            self.throttled,
            self.admitted,
        )
        self.events, self.step, self.task_runs = {}, Histogram(), {}
        self.task_seconds, self.ai_decisions = {}, {}
        self.throttled, self.admitted = {}, {}
        return taken

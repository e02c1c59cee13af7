"""Counts made where shards and pools run, added up by the engine loop, exposed as
Prometheus families."""

from __future__ import annotations

import json
import pickle

import pytest
from prometheus_client import generate_latest

from statefleet.api.metrics import ApiMetrics
from statefleet.engine.runtime.instances import ApplyOutcome
from statefleet.engine.runtime.tally import Tally


def _outcome(name: str) -> ApplyOutcome:
    return ApplyOutcome(event_id="e-1", instance_id="i-1", outcome=name)  # type: ignore[arg-type]


def test_take_hands_over_what_was_counted_and_starts_afresh() -> None:
    host = Tally()
    host.events_applied([_outcome("applied"), _outcome("duplicate")], 0.02)
    host.task_finished("EMAIL", "succeeded", 0.3)
    host.ai_decided("emitted")
    delta = pickle.loads(pickle.dumps(host.take()))  # it crosses a Ray call
    assert host.events == {}
    assert host.step.count == 0
    engine = Tally()
    engine.add(delta)
    engine.add(delta)
    assert engine.events == {"applied": 2, "duplicate": 2}
    assert engine.task_runs == {("EMAIL", "succeeded"): 2}
    assert engine.task_seconds["EMAIL"].count == 2
    assert engine.ai_decisions == {"emitted": 2}
    assert engine.step.total == 0.04


def test_the_engine_tally_is_exposed_as_counters_and_histograms() -> None:
    tally = Tally()
    tally.events_applied([_outcome("applied")] * 3, 0.003)
    tally.task_finished("AI", "retrying", 12.0)
    tally.ai_decided("rejected")
    text = generate_latest(ApiMetrics(tally).registry).decode()
    assert 'statefleet_events_total{outcome="applied"} 3.0' in text
    assert 'statefleet_step_batch_seconds_bucket{le="0.005"} 1.0' in text
    assert "statefleet_step_batch_seconds_count 1.0" in text
    assert 'statefleet_task_runs_total{outcome="retrying",type="AI"} 1.0' in text
    assert 'statefleet_task_run_seconds_bucket{le="10.0",type="AI"} 0.0' in text
    assert 'statefleet_task_run_seconds_bucket{le="+Inf",type="AI"} 1.0' in text
    assert 'statefleet_ai_decisions_total{outcome="rejected"} 1.0' in text


def test_a_tally_round_trips_through_json() -> None:
    tally = Tally()
    tally.events_applied([_outcome("applied"), _outcome("duplicate")], 0.02)
    tally.events_applied([_outcome("applied")], 3.0)
    tally.task_finished("EMAIL", "succeeded", 0.3)
    tally.task_finished("AI", "retrying", 12.0)
    tally.ai_decided("emitted")
    data = json.loads(json.dumps(tally.to_json()))  # what jsonb hands back
    assert Tally.from_json(data) == tally
    assert Tally.from_json(Tally().to_json()) == Tally()


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"le": [1.0], "events": {}},
        {**Tally().to_json(), "events": {"applied": -1}},
        {**Tally().to_json(), "step": {"buckets": [0, 1], "total": 0.0}},
        {**Tally().to_json(), "task_runs": [{"type": "EMAIL"}]},
    ],
)
def test_what_is_not_a_tally_is_refused(broken: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"tally|count|histogram"):
        Tally.from_json(broken)

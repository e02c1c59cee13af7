"""The Grafana dashboard in helm/ asks only for series statefleet exposes."""

from __future__ import annotations

import json
import pathlib
import re

from prometheus_client import generate_latest

from statefleet.api.metrics import ApiMetrics
from statefleet.engine.runtime.instances import ApplyOutcome
from statefleet.engine.runtime.tally import Tally

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "statefleet" / "dashboards" / "statefleet.json"


def exposed() -> set[str]:
    tally = Tally()
    tally.events_applied([ApplyOutcome("e", "i", "applied")], 0.01)
    tally.task_finished("EMAIL", "succeeded", 0.1)
    tally.ai_decided("emitted")
    metrics = ApiMetrics(tally)
    metrics.requests.labels("/v1/instances", "POST", "201").inc()
    metrics.latency.labels("/v1/instances", "POST").observe(0.01)
    metrics.instances.labels("running").set(1)
    metrics.tasks.labels("pending").set(1)
    metrics.queue_depth.labels("workflow-orchestrator").set(0)
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def test_every_series_of_the_dashboard_is_exposed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    wanted = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"statefleet_[a-z_]+", target["expr"])
    }
    assert len(wanted) >= 10
    assert wanted <= exposed(), wanted - exposed()

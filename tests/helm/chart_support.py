"""Paths shared by the chart checks (a module of its own: ``conftest`` names collide)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "statefleet"
#: The KubeRay schema, committed with its provenance (see its README).
KUBERAY_SCHEMAS = REPO / "tests" / "helm" / "schemas" / "kuberay"

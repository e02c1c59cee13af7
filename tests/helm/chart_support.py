"""Paths shared by the chart checks (a module of its own: ``conftest`` names collide)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "statefleet"
#: CI puts a copy of ``shared/`` beside the clone; the schemas are not vendored.
KUBERAY_SCHEMAS = REPO.parent / "shared" / "schemas" / "kuberay"

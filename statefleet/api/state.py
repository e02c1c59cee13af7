"""What one app instance holds: settings, pool, queue, service and metrics.

Kept on ``app.state`` so two apps in one process (tests) never share anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from fastapi import Request

from statefleet.api.metrics import ApiMetrics
from statefleet.api.settings import ApiSettings
from statefleet.engine.ports import Queue
from statefleet.engine.runtime import WorkflowService
from statefleet.engine.runtime.engine import Engine

__all__ = ["AppState", "app_state"]


@dataclass
class AppState:
    settings: ApiSettings
    pool: asyncpg.Pool[Any]
    queue: Queue
    service: WorkflowService
    metrics: ApiMetrics
    #: The engine running in this process, if any (its heartbeat feeds ``/healthz``).
    engine: Engine | None = None


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.statefleet
    return state

"""The HTTP API (v1): an app factory over the engine's ``WorkflowService``.

``create_app(settings)`` builds a FastAPI app with no module-level state: the pool,
queue and service live on ``app.state``, opened by the lifespan unless injected (tests
inject the pool, queue and worker they already run). The contract is ``docs/api.md``.
"""

from statefleet.api.app import create_app
from statefleet.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]

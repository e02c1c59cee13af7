"""Workflows shipped in the package, so ``statefleet demo`` works from a wheel.

``HELLO_WORKFLOW`` is the seed's hello workflow, the same as
``tests/fixtures/hello-workflow.json`` (a unit test keeps the two equal).
"""

from __future__ import annotations

from typing import Any

__all__ = ["HELLO_WORKFLOW"]

HELLO_WORKFLOW: dict[str, Any] = {
    "id": "hello-workflow",
    "initial": "start",
    "context": {"greeted": False},
    "states": {
        "start": {
            "on": {
                "WORKFLOW_START": {
                    "target": "notify",
                    "actions": [
                        {
                            "type": "createTask",
                            "task": {
                                "type": "EMAIL",
                                "name": "send-hello",
                                "input": {"to": "user@example.com", "subject": "Hello"},
                                "completionEvent": "HELLO_SENT",
                            },
                        }
                    ],
                }
            }
        },
        "notify": {"on": {"HELLO_SENT": {"target": "done"}}},
        "done": {"type": "final"},
    },
}

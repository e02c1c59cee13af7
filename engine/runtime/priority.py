"""Priorities: 0..10, higher first; 10 is interactive.

Interactive work (a single start, a send, a HUMAN completion, a task's completion) is
published to the queue as soon as it commits. Anything lower waits in Postgres for the
admitter (``admission.py``), which hands it to shards and pools in weighted fair order
across tenants, so a bulk run never builds a queue that interactive work waits behind.
"""

from __future__ import annotations

__all__ = ["BATCH_PRIORITY", "INTERACTIVE", "MAX_PRIORITY", "MIN_PRIORITY", "check_priority"]

MIN_PRIORITY = 0
MAX_PRIORITY = 10
#: Published at once, never held: single starts, sends and completions.
INTERACTIVE = MAX_PRIORITY
#: A batch's default: below every interactive request.
BATCH_PRIORITY = 5


def check_priority(priority: int) -> int:
    """``priority`` if it is an int in 0..10.

    Raises:
        ValueError: anything else.
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"priority must be an integer from 0 to 10, not {priority!r}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be from 0 to 10, not {priority}")
    return priority

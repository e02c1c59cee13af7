"""Bodies of the upgrade routes (docs/upgrades.md), camelCase on the wire like the rest.

Kept apart from ``models.py`` because an upgrade report is a family of its own: the
request, the counts by verdict, the apply's progress and one entry per instance.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from statefleet.api.models import Body, Wire
from statefleet.engine.runtime.upgrade_plans import UpgradeItem, UpgradeReport

__all__ = [
    "DivergenceOut",
    "TaskMoveOut",
    "UpgradeCounts",
    "UpgradeIn",
    "UpgradeItemOut",
    "UpgradeOut",
    "UpgradeProgress",
]

Verdict = Literal["compatible", "diverged", "unmappable", "error"]
Version = Field(ge=1, le=2**31 - 1)


class UpgradeIn(Body):
    """What ``POST /v1/definitions/{key}/upgrades`` takes."""

    from_version: int = Version
    to_version: int = Version
    state_map: dict[str, str] | None = Field(
        default=None, description='Renamed or removed states, e.g. {"review": "legal_review"}'
    )
    context_defaults: dict[str, Any] | None = Field(
        default=None, description="Context fields B needs that A's instances may lack"
    )
    instance_ids: list[uuid.UUID] | None = Field(
        default=None, max_length=100_000, description="Only these instances (default: all)"
    )
    dry_run: bool = True
    force: bool = False


class UpgradeCounts(Wire):
    compatible: int
    diverged: int
    unmappable: int
    error: int


class UpgradeProgress(Wire):
    """Of the instances an apply chose: moved, skipped (re-planned or finished), pending."""

    chosen: int
    moved: int
    skipped: int
    pending: int


class DivergenceOut(Wire):
    seq: int
    event: str
    expected: Any = None
    got: Any = None
    reason: Literal["state", "context"]


class TaskMoveOut(Wire):
    task_id: uuid.UUID
    kind: Literal["task", "timer"]
    name: str
    action: Literal["kept", "cancelled", "rearmed"]
    event: str | None = None
    delay_ms: int | None = None
    run_at: datetime | None = None


class UpgradeItemOut(Wire):
    instance_id: uuid.UUID
    verdict: Verdict
    target_state: Any = None
    divergence: DivergenceOut | None = None
    message: str | None = None
    seq: int | None = None
    tasks: list[TaskMoveOut] = Field(default_factory=list)
    chosen: bool
    outcome: Literal["planned", "moved", "skipped"]
    applied_verdict: Verdict | None = None

    @classmethod
    def of(cls, item: UpgradeItem) -> UpgradeItemOut:
        detail = item.detail
        return cls(
            instance_id=item.instance_id,
            verdict=item.verdict,  # type: ignore[arg-type]
            target_state=detail.get("targetState"),
            divergence=DivergenceOut.model_validate(detail["divergence"])
            if detail.get("divergence")
            else None,
            message=detail.get("message"),
            seq=detail.get("seq"),
            tasks=[TaskMoveOut.model_validate(t) for t in detail.get("tasks", [])],
            chosen=item.chosen,
            outcome=item.outcome,  # type: ignore[arg-type]
            applied_verdict=item.applied_verdict,  # type: ignore[arg-type]
        )


class UpgradeOut(Wire):
    """An upgrade request: what was asked, counts by verdict, progress, a page of items."""

    id: uuid.UUID
    definition_key: str
    from_version: int
    to_version: int
    state_map: dict[str, str]
    context_defaults: dict[str, Any]
    dry_run: bool
    force: bool
    status: Literal["planning", "applying", "done", "failed"]
    total: int
    counts: UpgradeCounts
    progress: UpgradeProgress
    items: list[UpgradeItemOut]
    next_cursor: str | None
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None

    @classmethod
    def of(cls, r: UpgradeReport) -> UpgradeOut:
        return cls(
            id=r.id,
            definition_key=r.definition_key,
            from_version=r.from_version,
            to_version=r.to_version,
            state_map=r.state_map,
            context_defaults=r.context_defaults,
            dry_run=r.dry_run,
            force=r.force,
            status=r.status,  # type: ignore[arg-type]
            total=r.total,
            counts=UpgradeCounts.model_validate(r.counts),
            progress=UpgradeProgress(
                chosen=r.chosen, moved=r.moved, skipped=r.skipped, pending=r.pending
            ),
            items=[UpgradeItemOut.of(i) for i in r.items],
            next_cursor=r.next_cursor,
            error=r.error,
            created_at=r.created_at,
            finished_at=r.finished_at,
        )

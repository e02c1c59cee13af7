"""RecentCheckpoints: the Worker's bounded cache of recently stepped instances."""

from __future__ import annotations

import uuid

import pytest

from statefleet.engine.runtime.checkpoints import Checkpoint, RecentCheckpoints


def checkpoint(n: int, version: int = 0) -> Checkpoint:
    return Checkpoint(
        tenant_id="t",
        instance_id=uuid.UUID(int=n),
        definition_id=uuid.UUID(int=0),
        status="running",
        snapshot={"value": "a"},
        version=version,
        last_seq=version,
    )


def test_keeps_the_most_recently_put_and_evicts_the_oldest() -> None:
    cache = RecentCheckpoints(max_entries=2)
    for n in (1, 2):
        cache.put(checkpoint(n))
    cache.put(checkpoint(1, version=1))  # 1 is now the most recent
    cache.put(checkpoint(3))
    assert len(cache) == 2
    assert cache.get(("t", uuid.UUID(int=2))) is None
    assert cache.get(("t", uuid.UUID(int=1))) == checkpoint(1, version=1)
    assert cache.get(("t", uuid.UUID(int=3))) == checkpoint(3)


def test_drop_forgets_and_tolerates_unknown_keys() -> None:
    cache = RecentCheckpoints()
    cache.put(checkpoint(1))
    cache.drop(("t", uuid.UUID(int=1)))
    cache.drop(("t", uuid.UUID(int=9)))
    assert cache.get(("t", uuid.UUID(int=1))) is None


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentCheckpoints(0)

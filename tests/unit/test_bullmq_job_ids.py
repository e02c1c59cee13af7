"""BullMQ job ids: every id we write is one Node's ``Queue.add`` accepts."""

from __future__ import annotations

import pytest

from statefleet.drivers.bullmq import job_id_for


@pytest.mark.parametrize("key", ["e1", "task-7-0", "3f2a9c1e-uuid-like-1", "event_x"])
def test_valid_keys_pass_through(key: str) -> None:
    assert job_id_for(key) == key


@pytest.mark.parametrize("key", ["a:b", "42", "-7", " 3 ", "1.5", "marker", "meta", "sfh-x"])
def test_keys_node_would_refuse_or_that_collide_are_hashed(key: str) -> None:
    mapped = job_id_for(key)
    assert mapped.startswith("sfh-")
    assert len(mapped) == 4 + 64
    assert ":" not in mapped
    assert mapped == job_id_for(key)  # deterministic: duplicates stay duplicates
    assert mapped != job_id_for(key + "x")

"""The engine's ids: random version-4 UUIDs in asyncpg's C type, interchangeable with uuid.UUID."""

from __future__ import annotations

import pickle
import uuid

import pytest

from statefleet.engine.store.db import new_uuid, read_uuid


def test_new_ids_are_random_version_4_uuids() -> None:
    ids = [new_uuid() for _ in range(1_000)]
    assert len(set(ids)) == 1_000
    assert all(isinstance(i, uuid.UUID) for i in ids)
    assert {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {uuid.RFC_4122}


def test_an_id_equals_hashes_and_prints_like_the_same_uuid_uuid() -> None:
    made = new_uuid()
    plain = uuid.UUID(str(made))
    assert made == plain
    assert hash(made) == hash(plain)
    assert {plain: "found"}[made] == "found"
    assert str(made) == str(plain)
    assert pickle.loads(pickle.dumps(made)) == plain  # crosses Ray calls


@pytest.mark.parametrize(
    "text",
    [
        "12345678-1234-5678-1234-567812345678",
        "12345678123456781234567812345678",
        "{12345678-1234-5678-1234-567812345678}",
        "urn:uuid:12345678-1234-5678-1234-567812345678",
    ],
)
def test_reading_accepts_what_uuid_uuid_accepts(text: str) -> None:
    assert read_uuid(text) == uuid.UUID(text)


@pytest.mark.parametrize("text", ["", "garbage", "12345678-1234-5678-1234-56781234567g"])
def test_reading_refuses_what_uuid_uuid_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"UUID|base 16"):
        read_uuid(text)

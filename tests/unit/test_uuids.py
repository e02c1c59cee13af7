"""The engine's ids: random version-4 UUIDs in asyncpg's C type, interchangeable with uuid.UUID."""

from __future__ import annotations

import os
import pickle
import threading
import uuid

import pytest

from statefleet.engine.store.db import new_uuid, read_uuid


def test_new_ids_are_random_version_4_uuids() -> None:
    ids = [new_uuid() for _ in range(1_000)]
    assert len(set(ids)) == 1_000
    assert all(isinstance(i, uuid.UUID) for i in ids)
    assert {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {uuid.RFC_4122}


def test_ids_stay_unique_across_blocks_threads_and_a_fork() -> None:
    # new_uuid hands out pre-drawn random bytes: many blocks' worth, taken by
    # threads at once and by a forked child, must still never repeat.
    taken: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def take(into: list[uuid.UUID]) -> None:
        into.extend(new_uuid() for _ in range(5_000))

    threads = [threading.Thread(target=take, args=(part,)) for part in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child writes the ids it makes next, then exits at once
        os.write(write, b"".join(new_uuid().bytes for _ in range(100)))
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read, "rb") as pipe:
        raw = pipe.read()
    forked = [uuid.UUID(bytes=raw[at : at + 16]) for at in range(0, len(raw), 16)]
    parent = [new_uuid() for _ in range(100)]
    every = [i for part in taken for i in part] + forked + parent
    assert len(forked) == 100
    assert len(set(every)) == len(every) == 20_200


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

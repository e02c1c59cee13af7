"""Instance ids parsed once: events carry them as text, the engine keys by ``uuid.UUID``.

An event's instance id is parsed where its shard takes it, where its step is applied
and where the rows its commit wrote are matched back to it: over 6 parses per hello
instance within a few milliseconds, and ``uuid.UUID``'s parser was about a tenth of
the engine's Python time. A small LRU (functools) answers the repeats; an invalid id
raises ``ValueError`` every time, as ``uuid.UUID`` does, and is not remembered.
"""

from __future__ import annotations

import functools
import uuid

__all__ = ["parse_uuid"]

#: Ids in flight at once per process: a few batches of a few thousand events.
CACHED_IDS = 8192


@functools.lru_cache(maxsize=CACHED_IDS)
def parse_uuid(text: str) -> uuid.UUID:
    """``uuid.UUID(text)``, remembered.

    Raises:
        ValueError: ``text`` is not a UUID.
    """
    return uuid.UUID(text)

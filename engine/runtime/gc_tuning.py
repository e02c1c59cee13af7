"""Garbage-collector settings for a process that runs the engine (a loop, a shard, a pool).

The engine allocates a few hundred short-lived objects per step (rows, futures, dicts
of a checkpoint), and almost none of them are cyclic garbage: reference counting frees
them. CPython's default generation-0 threshold (700 allocations) nevertheless runs a
collection every few steps, and each one walks every young container; with a large
heap of long-lived objects (imported modules, compiled definitions, resident
checkpoints) the older generations' passes cost more still. Measured on the in-process
hello benchmark, collections took about a quarter of the engine's CPU.

So a process that runs the engine moves what it holds at start into the permanent
generation (``gc.freeze``: never scanned again) and raises the generation-0 threshold;
cycles are still collected, only less often. This is a process-wide setting, which is
why only the engine's hosts (``Engine.start`` and the Ray actors) call it.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]


_frozen = False


def tune_gc(gen0_threshold: int) -> None:
    """Freezes what the process holds now (once) and collects generation 0 less often.

    Once per process: a process that starts engines again and again (a test session)
    would otherwise freeze, and so never collect, the cyclic garbage of every earlier one.
    """
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)

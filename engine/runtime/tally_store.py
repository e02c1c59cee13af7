"""Engine tallies in Postgres: each engine loop's counts, summed where no engine runs.

An engine loop's :class:`~statefleet.engine.runtime.tally.Tally` lives in its process,
so only that process's ``/metrics`` could show it; a standalone ``statefleet api`` (its
own pods, the engine in worker pods) showed none of it. So every engine loop has a
random id and a :class:`TallyFlusher` beside its sweeper and scheduler (the same
:class:`~statefleet.engine.runtime.background.BackgroundLoop`) that upserts its
cumulative tally into ``engine_tallies`` every ``metrics_flush_ms`` and once more when
the loop stops; :func:`cluster_tally` sums all rows, which is what a process running no
engine shows, read when scraped.

The totals only grow while engines come and go: a restarted worker is a new engine with
a new row, next to its previous life's. Rows not flushed for 7 days are deleted by the
flushes of the others (counters then drop once, which Prometheus reads as a reset).
A flush that fails logs a warning and the engine goes on; the next one catches up.
"""

from __future__ import annotations

import asyncio
import logging

from statefleet.engine.runtime.background import BackgroundLoop
from statefleet.engine.runtime.tally import Tally
from statefleet.engine.store.db import Connection, Pool
from statefleet.engine.store.queries import load_queries

__all__ = ["TallyFlusher", "cluster_tally", "save_tally"]

log = logging.getLogger(__name__)
SQL = load_queries("tallies.sql")

#: The longest one flush may take (a hung Postgres must not hold an engine's stop).
FLUSH_TIMEOUT_S = 10.0


async def save_tally(connection: Connection, engine_id: str, tally: Tally) -> None:
    """Stores ``tally`` as engine ``engine_id``'s (and deletes rows idle for 7 days)."""
    await connection.execute(SQL["save_engine_tally"], engine_id, tally.to_json())


async def cluster_tally(connection: Connection) -> Tally:
    """The sum of every engine's stored tally; a row that is not one is skipped."""
    total = Tally()
    for row in await connection.fetch(SQL["engine_tallies"]):
        try:
            total.add(Tally.from_json(row["tally"]))
        except ValueError as error:
            log.warning("engine tally %s skipped: %s", row["engine_id"], error)
    return total


class TallyFlusher(BackgroundLoop):
    """Upserts ``tally`` as engine ``engine_id``'s at :meth:`start` and every
    ``interval_ms`` until :meth:`stop`, which flushes once more."""

    task_name = "statefleet-tally-flush"
    failure_log = log
    # Not used: a flush never raises (it logs its own warning, once per failing run).
    failure_message = "storing the engine tally failed; trying again in %d ms"

    def __init__(self, pool: Pool, engine_id: str, tally: Tally, *, interval_ms: int) -> None:
        self.pool = pool
        self.engine_id = engine_id
        self.tally = tally
        self.interval_ms = interval_ms
        #: The last flush failed (its warning is logged once, until one succeeds).
        self._failing = False
        super().__init__()

    async def flush(self) -> bool:
        """One upsert; never raises (but for cancellation). Returns whether it was stored."""
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_S), self.pool.acquire() as connection:
                await save_tally(connection, self.engine_id, self.tally)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not self._failing:
                log.warning(
                    "storing engine %s's tally failed (the api's /metrics lags until a "
                    "flush succeeds): %r",
                    self.engine_id,
                    error,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("storing engine %s's tally works again", self.engine_id)
        self._failing = False
        return True

    def _wait_ms(self) -> int:
        return self.interval_ms

    async def _pass(self, wait: float) -> float:
        await self.flush()
        return wait

    async def stop(self) -> None:
        """Stops the periodic flushes, then flushes once more (if they were running)."""
        running = self._task is not None
        await super().stop()
        if running:
            await self.flush()

"""Engine tallies in Postgres: each engine loop stores its counts, and a process running
no engine shows the sum of all of them on /metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid

import pytest
from runtime_support import FAST, handlers_of

from statefleet.api.metrics import ApiMetrics
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.handlers import HandlerRegistry
from statefleet.engine.ports import event_job
from statefleet.engine.runtime import Engine, LocalBackend
from statefleet.engine.runtime.instances import ApplyOutcome
from statefleet.engine.runtime.tally import Tally
from statefleet.engine.runtime.tally_store import TallyFlusher, cluster_tally, save_tally
from statefleet.engine.store.db import Pool, create_pool


def _counted(applied: int, emails: int) -> Tally:
    tally = Tally()
    outcome = ApplyOutcome(event_id="e", instance_id="i", outcome="applied")
    tally.events_applied([outcome] * applied, 0.01)
    for _ in range(emails):
        tally.task_finished("EMAIL", "succeeded", 0.2)
    tally.ai_decided("emitted")
    return tally


async def test_the_tallies_of_two_engines_are_summed_on_metrics_without_an_engine(
    database_dsn: str,
) -> None:
    pool = await create_pool(database_dsn, max_size=2)
    try:
        one, two = _counted(applied=3, emails=1), _counted(applied=4, emails=2)
        first = TallyFlusher(pool, "engine-1", one, interval_ms=60_000)
        second = TallyFlusher(pool, "engine-2", two, interval_ms=60_000)
        assert await first.flush()
        assert await second.flush()
        # Each flush replaces that engine's row with its cumulative tally: never added twice.
        one.events_applied([ApplyOutcome(event_id="e", instance_id="i", outcome="applied")], 0.01)
        assert await first.flush()

        text = (await ApiMetrics().render(pool)).decode()
        assert 'statefleet_events_total{outcome="applied"} 8.0' in text
        assert 'statefleet_task_runs_total{outcome="succeeded",type="EMAIL"} 3.0' in text
        assert "statefleet_step_batch_seconds_count 3.0" in text
        assert 'statefleet_task_run_seconds_count{type="EMAIL"} 3.0' in text
        assert 'statefleet_ai_decisions_total{outcome="emitted"} 2.0' in text

        # A process running an engine shows its own live tally, not the cluster's.
        own = (await ApiMetrics(Tally()).render(pool)).decode()
        assert 'statefleet_events_total{outcome="applied"}' not in own
    finally:
        await pool.close()


async def test_rows_idle_for_a_week_are_deleted_and_unreadable_rows_skipped(
    database_dsn: str,
) -> None:
    pool = await create_pool(database_dsn, max_size=2)
    try:
        async with pool.acquire() as connection:
            await save_tally(connection, "gone", _counted(applied=5, emails=0))
            await save_tally(connection, "recent", _counted(applied=1, emails=0))
            await connection.execute(
                "UPDATE engine_tallies SET updated_at = now() - interval '8 days'"
                " WHERE engine_id = 'gone'"
            )
            await connection.execute(
                "UPDATE engine_tallies SET updated_at = now() - interval '6 days'"
                " WHERE engine_id = 'recent'"
            )
            await connection.execute(
                "INSERT INTO engine_tallies (engine_id, tally) VALUES ('odd', '{\"le\": [1]}')"
            )
            await save_tally(connection, "live", _counted(applied=2, emails=0))
            ids = {r["engine_id"] for r in await connection.fetch("TABLE engine_tallies")}
            assert ids == {"recent", "odd", "live"}
            assert (await cluster_tally(connection)).events == {"applied": 3}
    finally:
        await pool.close()


async def _stored(pool: Pool, engine_id: str) -> dict[str, int] | None:
    async with pool.acquire() as connection:
        tally = await connection.fetchval(
            "SELECT tally FROM engine_tallies WHERE engine_id = $1", engine_id
        )
    return None if tally is None else Tally.from_json(tally).events


async def _until_stored(pool: Pool, engine_id: str, events: dict[str, int]) -> None:
    deadline = time.monotonic() + 30
    while await _stored(pool, engine_id) != events:
        assert time.monotonic() < deadline, f"engine {engine_id} never stored {events}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("flush_ms", [50, 3_600_000])
async def test_an_engine_flushes_while_it_runs_and_when_it_stops(
    database_dsn: str, flush_ms: int
) -> None:
    """At start, every ``metrics_flush_ms`` (50 ms), and at stop (an hour: no flush between)."""
    front = await create_pool(database_dsn, max_size=2)
    hosts_pool = await create_pool(database_dsn, max_size=2)
    queue = MemoryQueue()
    settings = dataclasses.replace(FAST, metrics_flush_ms=flush_ms)
    backend = LocalBackend(hosts_pool, handlers_of(HandlerRegistry()), settings)
    engine = Engine(front, queue, backend, settings)
    assert engine.engine_id != Engine(front, queue, backend, settings).engine_id
    job = event_job(tenant_id="acme", instance_id=str(uuid.uuid4()), event_id="e", event_type="GO")
    await engine.start()
    try:
        await _until_stored(front, engine.engine_id, {})  # the first flush, at start
        await engine.on_events([job])  # reaches the shard: an unknown instance
        counted = dict(engine.tally.events)
        assert counted
        if flush_ms == 50:
            await _until_stored(front, engine.engine_id, counted)
        else:
            assert await _stored(front, engine.engine_id) == {}
    finally:
        await engine.stop()
        await hosts_pool.close()
        await queue.close()
    try:
        assert await _stored(front, engine.engine_id) == counted
    finally:
        await front.close()


async def test_a_failed_flush_warns_once_and_never_raises(
    database_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await create_pool(database_dsn, max_size=1)
    await pool.close()
    flusher = TallyFlusher(pool, "engine-x", Tally(), interval_ms=10)
    with caplog.at_level(logging.WARNING, logger="statefleet.engine.runtime.tally_store"):
        flusher.start()
        await asyncio.sleep(0.1)  # several periodic flushes, all failing
        await flusher.stop()  # and the last one
        assert not await flusher.flush()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "engine-x" in warnings[0].getMessage()

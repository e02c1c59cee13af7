"""The production shape, for real: a Ray cluster started with ``ray start``, two
``statefleet worker`` processes, ``statefleet api``, BullMQ on ``redis-server``.

The Ray nodes are started from an environment without any statefleet variable, and
only the workers are told where the SMTP server is: every e-mail arriving proves that
the settings reached the pool actors (on whichever node Ray placed them) through
their constructor arguments. The two workers must share one set of named actors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis_server import redis_url_for_tests

from benchmarks.cluster import (
    Cluster,
    create_database,
    drop_database,
    named_actors,
    run_hello,
    running_cluster,
)
from statefleet.client import AsyncClient, Instance

pytestmark = pytest.mark.slow

INSTANCES = 300


@pytest.fixture
def cluster_dsn(postgres_dsn: str) -> Iterator[str]:
    dsn = asyncio.run(create_database(postgres_dsn))
    try:
        yield dsn
    finally:
        asyncio.run(drop_database(postgres_dsn, dsn))


async def start_one(cluster: Cluster) -> tuple[Instance, Instance, int]:
    """One interactive start through the API process: applied there as it is created,
    its e-mail task's job goes through BullMQ to a worker's pool. Returns the start's
    answer, the finished instance and the e-mails the sink then has."""
    async with AsyncClient(cluster.api_url, cluster.api_key, timeout=60) as client:
        started = await client.start("hello-workflow")
        finished = await client.wait(started.id, timeout=120, poll_interval=0.1)
    return started, finished, await cluster.sink.settled(INSTANCES + 1)


@pytest.mark.timeout(600)
def test_a_batch_runs_through_two_workers_on_a_two_node_ray_cluster(cluster_dsn: str) -> None:
    with redis_url_for_tests() as redis_url, running_cluster(cluster_dsn, redis_url) as cluster:
        figures = asyncio.run(run_hello(cluster, INSTANCES, timeout=300))
        started, finished, emails = asyncio.run(start_one(cluster))
        actors = named_actors(cluster.ray_address)
        logs = cluster.logs()

    assert figures["done"] == INSTANCES, logs
    assert figures["emails"] == INSTANCES, logs  # the sink only the workers knew of
    # The single start came back already past WORKFLOW_START, waiting for its e-mail.
    assert (started.status, started.value) == ("running", "notify"), logs
    assert finished.status == "done", logs
    assert emails == INSTANCES + 1, logs
    shards = [name for name in actors if name.startswith("shard-")]
    pools = [name for name in actors if name.startswith("pool-")]
    # Two workers, one set of actors: 2 shards and 2 pools (STATEFLEET_SHARDS/POOLS).
    assert (len(shards), len(pools)) == (2, 2), actors
    assert all(name.endswith("-of-2") for name in shards)

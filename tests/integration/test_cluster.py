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
    create_database,
    drop_database,
    named_actors,
    run_hello,
    running_cluster,
)

pytestmark = pytest.mark.slow

INSTANCES = 300


@pytest.fixture
def cluster_dsn(postgres_dsn: str) -> Iterator[str]:
    dsn = asyncio.run(create_database(postgres_dsn))
    try:
        yield dsn
    finally:
        asyncio.run(drop_database(postgres_dsn, dsn))


@pytest.mark.timeout(600)
def test_a_batch_runs_through_two_workers_on_a_two_node_ray_cluster(cluster_dsn: str) -> None:
    with redis_url_for_tests() as redis_url, running_cluster(cluster_dsn, redis_url) as cluster:
        figures = asyncio.run(run_hello(cluster, INSTANCES, timeout=300))
        actors = named_actors(cluster.ray_address)
        logs = cluster.logs()

    assert figures["done"] == INSTANCES, logs
    assert figures["emails"] == INSTANCES, logs  # the sink only the workers knew of
    shards = [name for name in actors if name.startswith("shard-")]
    pools = [name for name in actors if name.startswith("pool-")]
    # Two workers, one set of actors: 2 shards and 2 pools (STATEFLEET_SHARDS/POOLS).
    assert (len(shards), len(pools)) == (2, 2), actors
    assert all(name.endswith("-of-2") for name in shards)

"""The production shape on one machine, and the hello workflow through it.

``python -m benchmarks cluster [-n 20000]`` starts what a deployment runs, each as its
own process tree: a Ray cluster of two nodes (``ray start --head`` and ``ray start
--address`` on the loopback addresses 127.0.0.2 and 127.0.0.3, see :func:`node_ip`),
started from an environment that holds no statefleet variable, each node declaring
the ``statefleet_shard`` and ``statefleet_pool`` resources; two ``statefleet worker``
joined with ``RAY_ADDRESS``,
``statefleet api``, BullMQ on a ``redis-server`` and an SMTP sink that only the workers
are told about (``STATEFLEET_SMTP_*``). It deploys the hello workflow through the API,
starts ``n`` instances as batches, and times them from the first start to the last
instance finished; every e-mail must reach the sink. In the same run it measures the
one-process figure (the engine in one process, in-process backend, memory queue,
e-mail a no-op) on the same Postgres.

:func:`running_cluster` is the shape itself; ``tests/integration/test_cluster.py`` uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks import common, hello, machine_info, pg
from benchmarks.cpu_by_role import CpuMeter
from statefleet.embedded import free_port
from statefleet.mailsink import RunningSink, running_mail_sink

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATEFLEET = [sys.executable, "-m", "statefleet"]
RAY = str(pathlib.Path(sys.executable).with_name("ray"))
#: Shard and pool actors each node may host (the workers ask for 2 shards, 2 pools).
NODE_RESOURCES = {"statefleet_shard": 2, "statefleet_pool": 2}
WORKER_ENGINE = {
    "STATEFLEET_SHARDS": "2",
    "STATEFLEET_POOLS": "2",
    "STATEFLEET_EVENT_BATCH_SIZE": "256",
    "STATEFLEET_EVENT_CONCURRENCY": "2",
    "STATEFLEET_TASK_BATCH_SIZE": "128",
    "STATEFLEET_TASK_CONCURRENCY": "4",
}


#: Ray's token authentication on, the token shared through ~/.ray/auth_token; actor
#: processes at normal priority (Ray nices its workers to 15 by default, but here the
#: actors do the engine's work while the drivers mostly wait).
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_worker_niceness": "0"}


def node_ip(index: int) -> str:
    """Node ``index``'s address: 127.0.0.2, 127.0.0.3, ... (loopback, one per "machine").

    Not 127.0.0.1: in cluster mode Ray 2.60 replaces a node address of 127.0.0.1 (or
    localhost) by the machine's external address, and traffic here stays on loopback.
    """
    return f"127.0.0.{2 + index}"


def bare_env(**extra: str) -> dict[str, str]:
    """What a freshly provisioned node has: PATH, HOME, locale, Ray's own settings;
    no statefleet settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    return env | RAY_ENV | {"PYTHONUNBUFFERED": "1"} | extra


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: pathlib.Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class Cluster:
    """The running shape: where the API is, its key, the sink, the processes."""

    api_url: str
    api_key: str
    dsn: str
    redis_url: str
    ray_address: str
    sink: RunningSink
    worker_urls: list[str]
    processes: list[Proc] = field(default_factory=list)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes)


def _spawn(name: str, argv: list[str], env: Mapping[str, str], logs: pathlib.Path) -> Proc:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    return Proc(name, process, log)


def _stop(proc: Proc, timeout: float = 20.0) -> None:
    """SIGTERM to the process group (``ray start --block`` stops its node on it), then KILL."""
    if proc.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.process.wait(5)


def _wait(predicate: Any, what: str, procs: list[Proc], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.process.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited ({proc.process.returncode}):\n{proc.tail()}"
                )
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.2)
    logs = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in procs)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s\n{logs}")


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


def ray_query(address: str, expression: str, *, timeout: float = 60) -> Any:
    """The JSON value of ``expression``, evaluated by a Ray driver joined to the cluster.

    A process of its own (this one must not become a Ray driver), with the nodes' bare
    environment, attached to the head's node address (see :func:`node_ip`).
    """
    code = (
        "import json, sys, ray\n"
        "host = sys.argv[1].rpartition(':')[0]\n"
        "ray.init(address=sys.argv[1], log_to_driver=False, _node_ip_address=host)\n"
        f"print(json.dumps({expression}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, address],
        env=bare_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _alive_nodes(address: str) -> int:
    try:
        alive: int = ray_query(address, "sum(n['Alive'] for n in ray.nodes())")
    except subprocess.CalledProcessError:
        return 0
    return alive


def named_actors(address: str) -> list[str]:
    """Names of the live named actors in Ray namespace ``statefleet`` on the cluster."""
    names: list[str] = ray_query(
        address,
        "sorted(a['name'] for a in ray.util.list_named_actors(all_namespaces=True)"
        " if a['namespace'] == 'statefleet')",
        timeout=120,
    )
    return names


@contextlib.contextmanager
def ray_nodes(count: int, logs: pathlib.Path, procs: list[Proc]) -> Iterator[str]:
    """``count`` Ray nodes on loopback addresses, each ``ray start --block``; yields the head's."""
    port = free_port()
    address = f"{node_ip(0)}:{port}"
    resources = json.dumps(NODE_RESOURCES)
    temp = pathlib.Path(tempfile.mkdtemp(prefix="sf-ray-", dir="/tmp"))
    common_args = [
        "--block",
        "--num-cpus=1",
        f"--resources={resources}",
        "--disable-usage-stats",
    ]
    try:
        head = [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
            f"--node-ip-address={node_ip(0)}",
            *common_args,
        ]
        procs.append(_spawn("ray-head", head, bare_env(), logs))
        _wait(lambda: _alive_nodes(address) >= 1, "ray head", procs)
        for index in range(1, count):
            node = [
                RAY,
                "start",
                f"--address={address}",
                f"--node-ip-address={node_ip(index)}",
                *common_args,
            ]
            procs.append(_spawn(f"ray-node-{index}", node, bare_env(), logs))
        _wait(lambda: _alive_nodes(address) >= count, f"{count} ray nodes", procs)
        yield address
    finally:
        for proc in reversed([p for p in procs if p.name.startswith("ray-")]):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _create_tenant(dsn: str, logs: pathlib.Path) -> str:
    result = subprocess.run(
        [*STATEFLEET, "tenants", "create", "bench", "--json"],
        env=bare_env(DATABASE_URL=dsn),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"tenants create failed: {result.stderr}")
    key: str = json.loads(result.stdout)["apiKey"]
    return key


@contextlib.contextmanager
def running_cluster(
    dsn: str, redis_url: str, *, workers: int = 2, nodes: int = 2, mail: bool = True
) -> Iterator[Cluster]:
    """The production shape on one machine; see the module docstring.

    ``dsn`` must hold a migrated database (the workers migrate too; harmless).
    """
    logs = pathlib.Path(tempfile.mkdtemp(prefix="sf-cluster-logs-", dir="/tmp"))
    procs: list[Proc] = []
    try:
        with running_mail_sink() as (sink, smtp_port), ray_nodes(nodes, logs, procs) as address:
            api_key = _create_tenant(dsn, logs)
            queue = {"WORKFLOW_QUEUE_DRIVER": "bullmq", "REDIS_URL": redis_url}
            worker_urls = []
            for index in range(workers):
                port = free_port()
                env = bare_env(
                    DATABASE_URL=dsn,
                    RAY_ADDRESS=address,
                    STATEFLEET_WORKER_PORT=str(port),
                    **queue,
                    **WORKER_ENGINE,
                )
                if mail:
                    env |= {
                        "STATEFLEET_SMTP_HOST": "127.0.0.1",
                        "STATEFLEET_SMTP_PORT": str(smtp_port),
                    }
                procs.append(_spawn(f"worker-{index}", [*STATEFLEET, "worker"], env, logs))
                worker_urls.append(f"http://127.0.0.1:{port}")
            api_port = free_port()
            api_env = bare_env(DATABASE_URL=dsn, STATEFLEET_API_PORT=str(api_port), **queue)
            procs.append(_spawn("api", [*STATEFLEET, "api"], api_env, logs))
            api_url = f"http://127.0.0.1:{api_port}"
            for url in [*worker_urls, api_url]:
                _wait(lambda url=url: _http_ok(f"{url}/healthz"), url, procs)
            try:
                yield Cluster(api_url, api_key, dsn, redis_url, address, sink, worker_urls, procs)
            finally:
                for proc in [p for p in procs if not p.name.startswith("ray-")]:
                    _stop(proc)
    finally:
        shutil.rmtree(logs, ignore_errors=True)


async def run_hello(
    cluster: Cluster, instances: int, timeout: float, meter: CpuMeter | None = None
) -> dict[str, float]:
    """Deploys hello, starts ``instances`` through the API, waits for all; returns figures.

    ``meter``, if given, measures the machine's CPU over the same window.
    """
    from statefleet.client import AsyncClient, BatchProgress

    async with AsyncClient(cluster.api_url, cluster.api_key, timeout=120) as client:
        await client.deploy(common.HELLO)
        inputs = [{"greeted": False} for _ in range(instances)]
        if meter is not None:
            meter.start()
        began = time.perf_counter()
        batches = await client.start_many("hello-workflow", inputs, chunk_size=5_000)
        deadline = began + timeout
        counts: dict[str, BatchProgress] = {}
        while True:
            # A finished batch is not asked again: the polling is load on the API and
            # Postgres, inside the measured window.
            for b in batches:
                known = counts.get(b.batch_id)
                if known is None or known.finished < known.total:
                    counts[b.batch_id] = await client.batch(b.batch_id)
            finished = sum(c.finished for c in counts.values())
            if finished >= instances:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{finished} of {instances} finished after {timeout} s")
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - began
        if meter is not None:
            meter.stop()
        done = sum(c.counts.done for c in counts.values())
    emails = await cluster.sink.settled(done)
    return {
        "instances": instances,
        "done": done,
        "seconds": round(elapsed, 3),
        "completions_per_s": round(instances / elapsed, 1),
        "emails": emails,
    }


def _redis() -> contextlib.AbstractContextManager[str]:
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        return contextlib.nullcontext(url)
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from redis_server import running_redis  # type: ignore[import-not-found]

    @contextlib.contextmanager
    def started() -> Iterator[str]:
        with running_redis() as server:
            yield server.url

    return started()


def main(*, instances: int = 20_000, timeout: float = 900.0, out: Any = None) -> dict[str, Any]:
    info = machine_info.describe()
    with pg.server() as admin_dsn, _redis() as redis_url:
        dsn = asyncio.run(create_database(admin_dsn))
        try:
            meter = CpuMeter()
            with running_cluster(dsn, redis_url) as cluster:
                figures = asyncio.run(run_hello(cluster, instances, timeout, meter))
        finally:
            asyncio.run(drop_database(admin_dsn, dsn))
        one_process = asyncio.run(hello.measure(admin_dsn, instances, timeout))
    ratio = figures["completions_per_s"] / one_process["completions_per_s"]
    lines = [
        "hello workflow, the production shape on one machine: 2 Ray nodes (ray start),",
        "2 statefleet worker, statefleet api, BullMQ on redis-server, SMTP sink (workers only)",
        f"  cluster:     {figures['instances']:,} instances in {figures['seconds']:.2f} s = "
        f"{figures['completions_per_s']:,.0f} completions/s; {figures['done']:,} done, "
        f"{figures['emails']:,} e-mails received",
        f"  one process: {one_process['completions_per_s']:,.0f} completions/s "
        "(in-process backend, memory queue, e-mail a no-op)",
        f"  cluster / one process: {ratio:.0%}",
        f"  {meter.report.line(instances)}",
    ]
    return common.finish(
        "cluster",
        info,
        {"instances": instances},
        {
            "cluster_completions_per_s": figures["completions_per_s"],
            "cluster_seconds": figures["seconds"],
            "emails": figures["emails"],
            "done": figures["done"],
            "one_process_completions_per_s": one_process["completions_per_s"],
        }
        | meter.report.figures(),
        lines,
        out,
    )


async def create_database(admin_dsn: str) -> str:
    """A new, migrated database on ``admin_dsn``'s server; returns its DSN."""
    import uuid

    import asyncpg

    from statefleet.engine.store import migrate

    name = f"statefleet_cluster_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = pg.dsn_for(admin_dsn, name)
    await migrate(dsn)
    return dsn


async def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drops ``dsn``'s database, whoever is still connected."""
    import asyncpg

    name = dsn.partition("?")[0].rsplit("/", 1)[1]
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()

"""Entry point: ``python -m benchmarks <name> [options]``.

``interpreter`` (no I/O), ``transitions``, ``hello``, ``latency``, ``peer-dbos`` and
``batch``, ``upgrade``, ``regions`` (Postgres: ``DATABASE_URL`` or a throwaway server),
``bullmq`` (Redis: ``REDIS_URL`` or a throwaway server), ``cluster`` (the production
shape: Ray nodes, workers and the API as processes), ``stall`` (single starts' latency while a
50,000-instance batch runs under ``statefleet up``), ``schedules`` (a schedule every 2 s
on two workers and a restart: one start per tick), ``fairness`` (tenant B's single starts
while tenant A's batch runs, against A alone), ``limits`` (a task type's concurrency and
rate limits across two workers, seen by the outside system), ``suite`` (all of them and
the targets table), ``compare A.json B.json``.
Each prints a table and writes JSON to ``benchmarks/results/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import sys


def _out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=pathlib.Path, default=None, help="results directory (benchmarks/results)"
    )


def _rate(text: str) -> float | None:
    return None if text == "auto" else float(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="name", required=True)

    interp = sub.add_parser("interpreter", help="transitions per second of the pure interpreter")
    interp.add_argument("--seconds", type=float, default=3.0, help="time per scenario")
    interp.add_argument("--no-write", action="store_true", help="do not write a results file")

    trans = sub.add_parser("transitions", help="durable event application vs batched asyncpg")
    trans.add_argument("--instances", type=int, default=1_000)
    trans.add_argument("--events", type=int, default=20_000)
    trans.add_argument("--batch", type=int, default=256, help="events per apply() call")
    trans.add_argument("--ref-batch", type=int, default=100, help="transitions per transaction")
    trans.add_argument("--concurrency", type=int, default=1, help="appliers / connections")
    trans.add_argument("--rounds", type=int, default=3, help="alternating rounds (best kept)")
    _out(trans)

    hello = sub.add_parser("hello", help="hello workflows end to end (memory driver)")
    hello.add_argument("--instances", "-n", type=int, default=2_000)
    hello.add_argument("--timeout", type=float, default=600.0)
    _out(hello)

    lat = sub.add_parser("latency", help="open-loop enqueue -> committed step percentiles")
    lat.add_argument("--instances", type=int, default=1_000)
    lat.add_argument(
        "--rate",
        type=_rate,
        default=None,
        help="events per second, or 'auto' (default): half of the measured maximum",
    )
    lat.add_argument("--seconds", type=float, default=10.0)
    _out(lat)

    dbos = sub.add_parser("peer-dbos", help="the hello workflow on DBOS Transact")
    dbos.add_argument("--instances", "-n", type=int, default=300)
    dbos.add_argument("--timeout", type=float, default=600.0)
    _out(dbos)

    bull = sub.add_parser("bullmq", help="our BullMQ driver vs the bullmq package, same run")
    bull.add_argument("--jobs", type=int, default=20_000)
    bull.add_argument("--chunk", type=int, default=1_000, help="jobs per addBulk/enqueue_many")
    bull.add_argument(
        "--concurrency",
        type=int,
        action="append",
        help="slots of the reference bullmq Worker (repeatable; default 32 and 512)",
    )
    bull.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported")
    bull.add_argument("--timeout", type=float, default=600.0)
    _out(bull)

    batch = sub.add_parser("batch", help="a 100,000-instance batch; bytes per resident instance")
    batch.add_argument("--instances", "-n", type=int, default=100_000)
    batch.add_argument("--chunk", type=int, default=1_000, help="instances per start_many")
    batch.add_argument("--resident", type=int, default=20_000, help="instances made resident")
    batch.add_argument("--max-resident", type=int, default=10_000, help="the bounded shard's")
    batch.add_argument("--timeout", type=float, default=3_600.0)
    _out(batch)

    cluster = sub.add_parser(
        "cluster", help="the production shape: 2 Ray nodes, 2 workers, API, BullMQ, SMTP"
    )
    cluster.add_argument("--instances", "-n", type=int, default=20_000)
    cluster.add_argument("--timeout", type=float, default=900.0)
    _out(cluster)

    stall = sub.add_parser(
        "stall", help="single starts' p99 while a 50,000-instance batch runs (issue 14)"
    )
    stall.add_argument("--instances", "-n", type=int, default=50_000, help="size of the batch")
    stall.add_argument("--interval", type=float, default=0.1, help="seconds between singles")
    stall.add_argument("--slow", type=float, default=5.0, help="a single slower than this")
    stall.add_argument("--timeout", type=float, default=1_800.0)
    _out(stall)

    sched = sub.add_parser(
        "schedules", help="a schedule every 2 s on 2 workers and a restart: one start per tick"
    )
    sched.add_argument("--every", type=int, default=2, help="the schedule's period (s)")
    sched.add_argument("--seconds", type=float, default=60.0, help="how long it runs")
    sched.add_argument("--restart-at", type=float, default=None, help="default: half-way")
    _out(sched)

    fair = sub.add_parser(
        "fairness", help="tenant B's single starts while tenant A's batch runs (issue 18)"
    )
    fair.add_argument("--instances", "-n", type=int, default=50_000, help="size of A's batch")
    fair.add_argument("--b-interval", type=float, default=0.1, help="seconds between B's starts")
    fair.add_argument("--b-duration", type=float, default=30.0, help="seconds B keeps starting")
    fair.add_argument("--timeout", type=float, default=1_800.0, help="give up a batch after (s)")
    _out(fair)

    limits = sub.add_parser(
        "limits", help="concurrency 5 and 50 starts/s for a task type on 2 workers (issue 18)"
    )
    limits.add_argument("--instances", "-n", type=int, default=2_000, help="concurrency part")
    limits.add_argument("--concurrency", type=int, default=5, help="the concurrency limit")
    limits.add_argument("--hold-ms", type=float, default=50.0, help="the sink holds a request")
    limits.add_argument("--rate-instances", type=int, default=1_000, help="rate part")
    limits.add_argument("--per-second", type=float, default=50.0, help="the rate limit")
    limits.add_argument("--timeout", type=float, default=900.0, help="give up a part after (s)")
    _out(limits)

    upgrade = sub.add_parser(
        "upgrade", help="dry run and apply of a definition upgrade; replays per second"
    )
    upgrade.add_argument("--instances", "-n", type=int, default=100_000)
    _out(upgrade)

    regions = sub.add_parser(
        "regions", help="one event to N parallel regions; a canary beside a heavy step"
    )
    regions.add_argument(
        "--sizes",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=(100, 500, 1_000, 2_000),
        help="region counts, comma-separated",
    )
    regions.add_argument("--rate", type=float, default=100.0, help="canary events per second")
    regions.add_argument("--seconds", type=float, default=3.0, help="canary run")
    _out(regions)

    suite = sub.add_parser("suite", help="every benchmark, then the targets of issue #8")
    suite.add_argument("--hello", type=int, default=5_000, help="hello instances")
    suite.add_argument("--dbos", type=int, default=300, help="DBOS workflows")
    suite.add_argument("--batch", type=int, default=100_000, help="batch instances")
    suite.add_argument("--jobs", type=int, default=20_000, help="BullMQ jobs")
    suite.add_argument("--seconds", type=float, default=10.0, help="latency run")
    suite.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="NAME",
        help="skip a benchmark (interpreter, transitions, hello, peer-dbos, latency, "
        "bullmq, batch); repeatable",
    )
    _out(suite)

    comp = sub.add_parser("compare", help="ratios B / A of the figures two result files share")
    comp.add_argument("a", type=pathlib.Path)
    comp.add_argument("b", type=pathlib.Path)
    return parser


def _exit_on_sigterm() -> None:
    """SIGTERM (``timeout``, a CI runner) unwinds like Ctrl-C: the benchmarks' ``finally``
    blocks then stop the servers and workers they started in sessions of their own, which
    a plain SIGTERM death would leave running."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    _exit_on_sigterm()
    args = build_parser().parse_args(argv)
    if args.name == "interpreter":
        from benchmarks import interpreter

        interpreter.main(seconds=args.seconds, write_results=not args.no_write)
    elif args.name == "transitions":
        from benchmarks import transitions

        transitions.main(
            instances=args.instances,
            events=args.events,
            batch=args.batch,
            ref_batch=args.ref_batch,
            concurrency=args.concurrency,
            rounds=args.rounds,
            out=args.out,
        )
    elif args.name == "hello":
        from benchmarks import hello

        hello.main(instances=args.instances, timeout=args.timeout, out=args.out)
    elif args.name == "latency":
        from benchmarks import latency

        latency.main(instances=args.instances, rate=args.rate, seconds=args.seconds, out=args.out)
    elif args.name == "peer-dbos":
        from benchmarks import peer_dbos

        peer_dbos.main(instances=args.instances, timeout=args.timeout, out=args.out)
    elif args.name == "bullmq":
        from benchmarks import bullmq_ratio

        bullmq_ratio.main(
            jobs=args.jobs,
            chunk=args.chunk,
            concurrency=args.concurrency or bullmq_ratio.REFERENCE_CONCURRENCY,
            rounds=args.rounds,
            timeout=args.timeout,
            out=args.out,
        )
    elif args.name == "batch":
        from benchmarks import batch

        batch.main(
            instances=args.instances,
            chunk=args.chunk,
            resident=args.resident,
            max_resident=args.max_resident,
            timeout=args.timeout,
            out=args.out,
        )
    elif args.name == "cluster":
        from benchmarks import cluster

        cluster.main(instances=args.instances, timeout=args.timeout, out=args.out)
    elif args.name == "stall":
        from benchmarks import stall

        options = ["--instances", str(args.instances), "--interval", str(args.interval)]
        options += ["--slow", str(args.slow), "--timeout", str(args.timeout)]
        stall.main(options + (["--out", str(args.out)] if args.out else []))
    elif args.name == "schedules":
        from benchmarks import schedules

        options = ["--every", str(args.every), "--seconds", str(args.seconds)]
        options += ["--restart-at", str(args.restart_at)] if args.restart_at is not None else []
        schedules.main(options + (["--out", str(args.out)] if args.out else []))
    elif args.name == "fairness":
        from benchmarks import fairness

        options = ["--instances", str(args.instances), "--b-interval", str(args.b_interval)]
        options += ["--b-duration", str(args.b_duration), "--timeout", str(args.timeout)]
        fairness.main(options + (["--out", str(args.out)] if args.out else []))
    elif args.name == "limits":
        from benchmarks import limits

        options = ["--instances", str(args.instances), "--concurrency", str(args.concurrency)]
        options += ["--hold-ms", str(args.hold_ms), "--rate-instances", str(args.rate_instances)]
        options += ["--per-second", str(args.per_second), "--timeout", str(args.timeout)]
        limits.main(options + (["--out", str(args.out)] if args.out else []))
    elif args.name == "upgrade":
        from benchmarks import upgrade

        upgrade.main(instances=args.instances, out=args.out)
    elif args.name == "regions":
        from benchmarks import regions

        regions.main(sizes=args.sizes, rate=args.rate, seconds=args.seconds, out=args.out)
    elif args.name == "suite":
        from benchmarks import suite

        suite.run(
            suite.SuiteSettings(
                hello_instances=args.hello,
                dbos_instances=args.dbos,
                batch_instances=args.batch,
                bullmq_jobs=args.jobs,
                latency_seconds=args.seconds,
                skip=frozenset(args.skip),
            ),
            out=args.out,
        )
    elif args.name == "compare":
        from benchmarks import compare

        compare.main(args.a, args.b)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Entry point: ``python -m benchmarks interpreter [--seconds S] [--quick]``."""

from __future__ import annotations

import argparse
import sys

from benchmarks import interpreter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="name", required=True)
    interp = sub.add_parser("interpreter", help="transitions per second of the pure interpreter")
    interp.add_argument("--seconds", type=float, default=3.0, help="time per scenario")
    interp.add_argument("--no-write", action="store_true", help="do not write a results file")
    args = parser.parse_args(argv)
    if args.name == "interpreter":
        interpreter.main(seconds=args.seconds, write_results=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

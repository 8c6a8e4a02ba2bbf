"""``python -m benchmarks [NAME ...] [--rounds N] [--scale F]``: print the table.

With no names every comparison runs, in the order below. The table (Markdown)
goes to stdout, progress to stderr; ``--json FILE`` also saves every round.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time

from ._common import Config, Row, format_table, progress

MODULES = [
    "streams",
    "inproc",
    "pipes",
    "datagrams",
    "anyio_layer",
    "anyio_datagrams",
    "anyio_pipes",
    "relay",
    "sendfile",
    "scheduler",
    "scaling",
    "workers",
]
# The rest need AF_UNIX sockets, FIFOs or trio.lowlevel.FdStream.
WINDOWS = {"relay", "scaling"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="packeteer_trio against its nearest peers: ratios ours/theirs "
        "of the medians of alternating rounds.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"any of: {', '.join(MODULES)}"
    )
    parser.add_argument(
        "--rounds", type=int, default=7, help="alternating rounds (default 7)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the work per round (default 1.0; 0.2 for a smoke run)",
    )
    parser.add_argument("--json", metavar="FILE", help="also save every round here")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print every round's figures"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in MODULES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; pick from {MODULES}")
    if args.rounds < 1 or args.scale <= 0:
        parser.error("--rounds must be >= 1 and --scale > 0")
    names = args.names or MODULES
    if sys.platform == "win32":
        skipped = [name for name in names if name not in WINDOWS]
        if skipped:
            progress(f"skipped on Windows (POSIX only): {', '.join(skipped)}")
        names = [name for name in names if name in WINDOWS]
    config = Config(rounds=args.rounds, scale=args.scale, verbose=args.verbose)
    rows: list[Row] = []
    started = time.perf_counter()
    for name in names:
        progress(f"{name} ...")
        begun = time.perf_counter()
        module = importlib.import_module(f"{__package__}.{name}")
        new_rows: list[Row] = module.run(config)
        rows += new_rows
        progress(format_table(new_rows))
        progress(f"{name}: {time.perf_counter() - begun:.1f} s")
    elapsed = time.perf_counter() - started
    print(
        f"Python {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}; {config.rounds} rounds, scale {config.scale}; "
        f"{elapsed:.0f} s in all. Ratio: ours / peer of the medians (peer / ours "
        "for CPU per request); above 1, ours is better.\n"
    )
    print(format_table(rows))
    missed = [row for row in rows if row.verdict == "MISSED"]
    if missed:
        print(f"\n{len(missed)} target(s) missed: see benchmarks/README.md")
    if args.json:
        with open(args.json, "w") as file:
            json.dump([vars(row) for row in rows], file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

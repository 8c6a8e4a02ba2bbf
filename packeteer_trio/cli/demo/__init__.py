"""``packeteer demo``: every scheme this platform has, end to end, in a table.

Nothing outside the machine is touched: only 127.0.0.1, ::1, a temporary
directory and (Linux) abstract socket names. Progress goes to stderr while
it runs (a bar when stderr is a terminal), the table (or with ``--json`` one
JSON object, see :mod:`._table`) to stdout; exit 0 only if every case passed
(a case this host cannot run, such as tcp6 without an IPv6 loopback, is
SKIPPED and does not count as a failure).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import trio

import packeteer_trio as pt

from .._args import COUNT, SECONDS, Number
from .._errors import UsageError, describe, leaves
from .._exit import EXIT_FAILURE, EXIT_OK
from .._progress import Bar, open_bar
from ._datagram_cases import demo_cases
from ._stream_cases import Measures, fifo_case, self_pipe_case, socket_case
from ._table import Case, print_json, print_table

if TYPE_CHECKING:
    from .._args import Subparsers

Run = Callable[[Measures], Awaitable[None]]
# The bulk's checksum is computed before a case starts, outside its timeout.
MAX_BULK_MB = 1000


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run every scheme of this platform end to end and print a table",
        description="Run every scheme this platform has end to end on loopback "
        "addresses and temporary paths: a few MB through each stream (checked "
        "by SHA-256), thousands of small round trips, datagram round trips and "
        "throughput. Prints a table; exit 0 only if all passed.",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these rows (repeatable): the start of a scheme such as tcp, "
        "udp6, local or local:abstract, or a behaviour (stream, datagram)",
    )
    parser.add_argument(
        "--bulk",
        type=Number(float, above=0, most=MAX_BULK_MB),
        default=8.0,
        metavar="MB",
        help="MB sent through each stream (default: %(default)s)",
    )
    parser.add_argument(
        "--round-trips",
        type=COUNT,
        default=5000,
        metavar="N",
        help="small round trips per case (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=SECONDS,
        default=15.0,
        metavar="SECONDS",
        help="fail a case that takes longer (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as one JSON object on stdout (schema: docs/cli.md)",
    )
    parser.set_defaults(run=run)


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def stream_cases(tmp: Path, bulk: int, count: int) -> list[Case]:
    def case(scheme: str, make: Callable[[Measures], Awaitable[None]]) -> Case:
        return Case(scheme, "stream", make)

    def sockets(url: pt.URL) -> Run:
        return lambda m: socket_case(url, bulk, count, m)

    linux = sys.platform.startswith("linux")
    abstract = f"/\0packeteer-demo-{os.getpid()}-{secrets.token_hex(4)}"
    cases = [
        case("tcp4", sockets(pt.URL.parse("tcp4://127.0.0.1:0"))),
        case("tcp6", sockets(pt.URL.parse("tcp6://[::1]:0"))),
    ]
    if not has_ipv6_loopback():
        cases[1] = Case("tcp6", "stream", None, "this host has no IPv6 loopback")
    anon = case("anon", lambda m: self_pipe_case(pt.URL("anon"), bulk, count, m))
    # No kernel at all: the row shows what the Python on both ends costs.
    inproc = case("inproc", sockets(pt.URL.parse("inproc://demo")))
    if sys.platform == "win32":  # pragma: no cover
        pipe = pt.URL(scheme="pipe", path=f"/packeteer-demo-{os.getpid()}")
        return [*cases, case("pipe", sockets(pipe)), anon, inproc]
    cases.append(case("local:path", sockets(pt.URL("local", path=str(tmp / "s.sock")))))
    if linux:
        cases.append(case("local:abstract", sockets(pt.URL("local", path=abstract))))
    up = pt.URL("fifo", path=str(tmp / "up"))
    down = pt.URL("fifo", path=str(tmp / "down"))
    return [
        *cases,
        case(
            "local:unnamed", lambda m: self_pipe_case(pt.URL("local"), bulk, count, m)
        ),
        anon,
        case("fifo", lambda m: fifo_case(up, down, bulk, count, m)),
        inproc,
    ]


def datagram_cases(tmp: Path, count: int) -> list[Case]:
    return [
        Case(scheme, "datagram", make, skip)
        for scheme, make, skip in demo_cases(tmp, count, has_ipv6_loopback())
    ]


async def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    bulk, count = int(args.bulk * 1e6), args.round_trips
    with tempfile.TemporaryDirectory(prefix="packeteer-demo-") as tmp:
        cases = stream_cases(Path(tmp), bulk, count)
        cases += datagram_cases(Path(tmp), count)
        cases = [case for case in cases if case.selected(args.only)]
        if not cases:
            raise UsageError(f"no demo rows match --only {' '.join(args.only)}")
        bar = open_bar()
        try:
            for number, case in enumerate(cases, 1):
                label = f"demo [{number}/{len(cases)}] {case.scheme} {case.behaviour}"
                bar.show(number - 1, len(cases), label, "cases")
                await run_case(case, label, args.timeout, bar)
        finally:
            bar.close()
    seconds = time.perf_counter() - started
    if args.json:
        print_json(cases, seconds)
    else:
        print_table(cases, seconds)
    failed = any(case.status.startswith("FAILED") for case in cases)
    return EXIT_FAILURE if failed else EXIT_OK


async def run_case(case: Case, name: str, timeout: float, bar: Bar) -> None:
    if case.run is None:
        case.status = f"SKIPPED: {case.skip}"
        bar.note(f"{name}: {case.status}")
        return
    if not bar.draws:  # the bar shows which case runs
        bar.note(f"{name}: running…")
    try:
        with trio.move_on_after(timeout) as scope:
            await case.run(case.measures)
        if scope.cancelled_caught:
            case.status = f"FAILED: timed out after {timeout:g} s"
    except Exception as exc:  # any failure is this row's result, not a crash
        case.status = f"FAILED: {describe(leaves(exc)[0])}"
    m = case.measures
    detail = f" ({m.url})" if m.url else ""
    bar.note(f"{name}: {case.status}{detail}")

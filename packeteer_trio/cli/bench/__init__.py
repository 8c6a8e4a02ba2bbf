"""``packeteer bench URL``: throughput and round-trip latency against an echo server.

Two phases on every connection at once: *throughput* pushes ``--bulk`` MB
through the echo server and reads it back (sender and reader run
concurrently; on datagram URLs, ``--count`` datagrams with a window in
flight); *latency* does ``--count`` round trips of ``--size`` bytes.
Self-echoing URLs (``anon://``, ``local://``) need no server at all.
Results go to stdout as text, or with ``--json`` as one JSON object
(:mod:`._report`); progress goes to stderr.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .._args import COUNT, SECONDS, Number, url_arg
from .._urls import is_datagram
from ._datagram import bench_datagrams
from ._stream import bench_streams

if TYPE_CHECKING:
    from .._args import Subparsers

# bytes(size) is allocated up front: an absurd size must be a usage error.
MAX_SIZE = 64 * 1024 * 1024


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="throughput and round-trip latency against an echo server",
        description="Measure MB/s and round-trip latency (p50/p99) against an "
        "echo server at URL (start one with 'packeteer echo URL').",
    )
    parser.add_argument("url", type=url_arg, metavar="URL")
    parser.add_argument(
        "--size",
        type=Number(int, least=1, most=MAX_SIZE),
        default=64,
        help="bytes per round trip, and per datagram (default: %(default)s)",
    )
    parser.add_argument(
        "--count",
        type=COUNT,
        default=10000,
        help="round trips per connection (default: %(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=COUNT,
        default=1,
        help="concurrent connections (default: %(default)s)",
    )
    parser.add_argument(
        "--bulk",
        type=Number(float, least=0),
        default=16.0,
        metavar="MB",
        help="MB pushed through each connection for throughput, 0 to skip "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=SECONDS,
        default=30.0,
        metavar="SECONDS",
        help="give up on a phase after this long (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as one JSON object on stdout (schema: docs/cli.md)",
    )
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    if is_datagram(args.url):
        return await bench_datagrams(args)
    return await bench_streams(args)

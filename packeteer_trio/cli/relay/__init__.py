"""``packeteer relay SOURCE TARGET``: a socat-like bridge between two connectors.

Every connection accepted on SOURCE gets its own connection to TARGET; bytes
are copied both ways and an end of file on one side is passed on as a
half-close to the other (see :mod:`._stream`). Datagram URLs bridge
datagrams: every sender on SOURCE gets its own channel to TARGET, and
replies go back (see :mod:`._datagram`).

``--max-connections N`` refuses what is beyond N (as systemd's
``MaxConnections=``): such a connection is accepted and closed at once, and
a new sender's datagrams are dropped, so a flood costs no descriptors and
the clients learn at once instead of hanging in a queue.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .._args import COUNT, SECONDS, SECONDS_OR_0, url_arg
from .._errors import UsageError
from .._exit import EXIT_OK
from .._urls import is_datagram
from ._datagram import relay_datagrams
from ._stream import relay_one, relay_streams

if TYPE_CHECKING:
    from .._args import Subparsers

__all__ = ["add_parser", "relay_one", "run"]


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "relay",
        help="bridge two connectors both ways (socat-like)",
        description="Listen on SOURCE; for every connection, connect to TARGET "
        "and copy both ways, passing half-closes on. Example: expose a unix "
        "socket over TCP with 'relay tcp://0.0.0.0:8080 local:///run/app.sock'.",
    )
    parser.add_argument("source", type=url_arg, metavar="SOURCE", help="listen here")
    parser.add_argument(
        "target", type=url_arg, metavar="TARGET", help="connect here per connection"
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="print bytes each way and MB/s for every connection when it closes",
    )
    parser.add_argument(
        "-w",
        "--wait",
        type=SECONDS,
        metavar="SECONDS",
        help="give up connecting to TARGET after this long, and close a "
        "connection once this long passes without data either way (nc -w); "
        "for datagrams the same as --idle",
    )
    parser.add_argument(
        "--max-connections",
        type=COUNT,
        metavar="N",
        help="at most N connections (datagrams: senders) at once; beyond, a "
        "new connection is closed at once and a new sender's datagrams are "
        "dropped, logged (default: no limit)",
    )
    parser.add_argument(
        "--idle",
        type=SECONDS,
        default=60.0,
        metavar="SECONDS",
        help="datagrams: forget a sender after this long without replies "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--linger",
        type=SECONDS_OR_0,
        default=1.0,
        metavar="SECONDS",
        help="streams: when one side has ended and the other cannot be told "
        "(tls+tcp:// cannot half-close), close both once this long passes "
        "without data (default: %(default)s)",
    )
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument(
        "-q", "--quiet", action="store_true", help="don't log connections and errors"
    )
    talk.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also log local addresses and bytes each way per connection",
    )
    parser.set_defaults(run=run, interrupt_code=EXIT_OK)


async def run(args: argparse.Namespace) -> int:
    source_dgram, target_dgram = is_datagram(args.source), is_datagram(args.target)
    if source_dgram != target_dgram:
        raise UsageError(
            f"cannot relay between {args.source} and {args.target}: one is a "
            "stream and the other a datagram URL"
        )
    if source_dgram:
        return await relay_datagrams(args)
    return await relay_streams(args)

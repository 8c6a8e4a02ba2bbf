"""``packeteer relay URL URL``: a socat-like bridge between two connectors.

Every connection accepted on the first URL gets its own connection to the
second; bytes are copied both ways and an end of file on one side is passed
on as a half-close to the other; where the other side cannot half-close
(TLS), the rest goes on until ``--linger`` seconds pass without data, then
both close. Datagram URLs bridge datagrams: every sender on the first URL
gets its own channel to the second, and replies go back.
"""

from __future__ import annotations

import argparse
import itertools
from typing import TYPE_CHECKING

import trio

from .. import Stream, connect, listen
from .._api import serve_listeners
from ._common import (
    EXIT_OK,
    SECONDS,
    SECONDS_OR_0,
    UsageError,
    can_receive,
    can_send,
    describe,
    is_datagram,
    log,
    mb_per_s,
    runtime_error,
    url_arg,
)
from ._splice import splice_copy
from ._streams import Linger, can_send_eof, copy, peer_name

if TYPE_CHECKING:
    from ._common import Subparsers


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
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="don't log connections and errors"
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
        from ._datagrams import relay_datagrams

        return await relay_datagrams(args)
    listener = await listen(args.source)
    async with listener:
        log(f"listening on {listener.url}, relaying to {args.target}")
        numbers = itertools.count(1)

        async def handler(stream: Stream) -> None:
            await relay_one(stream, next(numbers), args)

        await serve_listeners(handler, [listener])
    return EXIT_OK


async def relay_one(down: Stream, number: int, args: argparse.Namespace) -> None:
    """Bridge one accepted connection to a new one to the target; never raise."""
    quiet = args.quiet
    name = peer_name(down)
    log(f"#{number} connected: {name}", quiet=quiet)
    start = trio.current_time()
    counts = {"up": 0, "down": 0}
    try:
        async with down:
            up = await connect(args.target)
            linger = Linger(args.linger)
            # Both close outside the linger scope: a TLS stream closed while
            # cancelled skips its close_notify, which its peer sees as broken.
            async with up:
                with linger.scope:
                    async with trio.open_nursery() as nursery:
                        # A direction runs only if its reader can read and its
                        # writer can write (a FIFO end is one-way).
                        if can_receive(down) and can_send(up):
                            nursery.start_soon(_copy, down, up, counts, "up", linger)
                        if can_receive(up) and can_send(down):
                            nursery.start_soon(_copy, up, down, counts, "down", linger)
    except BaseException as exc:
        error = runtime_error(exc)
        if error is None:
            raise
        log(f"#{number} error: {describe(error)}", quiet=quiet)
    seconds = trio.current_time() - start
    log(f"#{number} disconnected: {name}", quiet=quiet)
    if args.stats:
        print(
            f"#{number} {name} -> {args.target}: "
            f"{counts['up']} bytes up ({mb_per_s(counts['up'], seconds):.1f} MB/s), "
            f"{counts['down']} bytes down "
            f"({mb_per_s(counts['down'], seconds):.1f} MB/s) in {seconds:.3f} s",
            flush=True,
        )


async def _copy(
    source: Stream,
    sink: Stream,
    counts: dict[str, int],
    direction: str,
    linger: Linger,
) -> None:
    def count(size: int) -> None:
        counts[direction] += size
        linger.touch()

    # On Linux the kernel moves the bytes itself where both ends allow it
    # (sockets and pipes, which can half-close).
    if await splice_copy(source, sink, count):
        return

    async def receive() -> bytes | bytearray:
        data = await source.receive_some()
        counts[direction] += len(data)
        linger.touch()
        return data

    async def finish() -> None:
        if can_send_eof(sink):
            await sink.send_eof()
        else:
            linger.start()  # TLS: the sink's peer cannot be told, see Linger

    await copy(receive, sink.send_all, finish)

"""``packeteer echo URL``: an echo server on any stream or datagram URL.

It always prints ``listening on URL`` (the bound address, real port included)
on stderr first, so scripts can start it on port 0 and read where it is.
Streams: one task per connection, an end of file answered with an end of
file. Datagrams: each one goes back to its sender.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from functools import partial
from typing import TYPE_CHECKING

import trio

import packeteer_trio as pt

from ._args import url_arg
from ._errors import describe, runtime_error
from ._exit import EXIT_OK
from ._log import Log
from ._stdio import StdoutSink
from ._streams import can_send, can_send_eof, connect_reply, local_name, peer_name
from ._urls import is_datagram

if TYPE_CHECKING:
    from ._args import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "echo",
        help="echo server on any stream or datagram URL",
        description="Echo every byte (or datagram) back to whoever sent it. "
        "Prints 'listening on URL' on stderr, then logs connects, disconnects "
        "and errors there. Ctrl-C stops it cleanly.",
    )
    parser.add_argument("url", type=url_arg, metavar="URL", help="where to listen")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument(
        "-q", "--quiet", action="store_true", help="don't log connections and errors"
    )
    talk.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also log each connection's local address and bytes each way "
        "(datagrams: per sender, when stopped)",
    )
    parser.add_argument(
        "--reply",
        type=url_arg,
        metavar="URL",
        help="send the echo of each connection to a new connection to this URL "
        "instead of back on the same one: for one-way schemes, e.g. "
        "'echo fifo:///tmp/in --reply fifo:///tmp/out'",
    )
    parser.set_defaults(run=run, interrupt_code=EXIT_OK)


async def run(args: argparse.Namespace) -> int:
    log = Log.of(args)
    if is_datagram(args.url):
        return await echo_datagrams(args.url, log)
    numbers = itertools.count(1)
    stdout = StdoutSink()

    async def handler(stream: pt.Stream) -> None:
        await echo_stream(stream, next(numbers), args, stdout, log)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(pt.serve, args.url, handler))
        log.always(f"listening on {listeners[0].url}")
    return EXIT_OK


async def echo_stream(
    stream: pt.Stream,
    number: int,
    args: argparse.Namespace,
    stdout: StdoutSink,
    log: Log,
) -> None:
    """Echo one connection until its end of file; log, never raise."""
    name = peer_name(stream)
    if log.verbose:
        log.detail(f"#{number} connected: {name} on {local_name(stream)}")
    else:
        log.info(f"#{number} connected: {name}")
    start, received, sent = trio.current_time(), 0, 0
    reply: trio.abc.HalfCloseableStream | None = None
    try:
        async with stream:
            try:
                while True:
                    data = await stream.receive_some()
                    if reply is None:
                        # Connect the reply path only once the peer spoke (or
                        # left): a FIFO session starts before any writer came.
                        reply = await _reply_for(stream, args, stdout, number, log)
                    if not data:
                        break
                    received += len(data)
                    await reply.send_all(data)
                    sent += len(data)
                if can_send_eof(reply):  # TLS cannot: closing says it
                    await reply.send_eof()
            finally:
                if reply is not None and reply is not stream:
                    await reply.aclose()
    except BaseException as exc:
        error = runtime_error(exc)
        if error is None:
            raise
        log.info(f"#{number} error: {describe(error)}")
    seconds = trio.current_time() - start
    if log.verbose:
        log.detail(
            f"#{number} disconnected: {name}: {received} bytes received, "
            f"{sent} bytes sent in {seconds:.3f} s"
        )
    else:
        log.info(f"#{number} disconnected: {received} bytes in {seconds:.3f} s")


async def _reply_for(
    stream: pt.Stream,
    args: argparse.Namespace,
    stdout: StdoutSink,
    number: int,
    log: Log,
) -> trio.abc.HalfCloseableStream:
    if args.reply is not None:
        return await connect_reply(args.reply)
    if can_send(stream):
        return stream
    log.info(
        f"#{number} {stream.url} is one-way: echoing to stdout "
        "(use --reply URL to send it back)"
    )
    return _StdoutStream(stdout)


class _StdoutStream(trio.abc.HalfCloseableStream):
    """stdout as the "reply" of a receive-only stream (a FIFO's reader)."""

    def __init__(self, sink: StdoutSink) -> None:
        self._sink = sink

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._sink.write(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        raise trio.ClosedResourceError("stdout cannot be read")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


# -- datagrams ------------------------------------------------------------------


@dataclasses.dataclass
class _Sender:
    datagrams: int = 0
    nbytes: int = 0


async def echo_datagrams(url: pt.URL, log: Log) -> int:
    """Answer every datagram to its sender, until interrupted."""
    sock = await pt.open_datagram(url)
    senders: dict[pt.URL, _Sender] = {}
    try:
        async with sock:
            log.always(f"listening on {sock.url}")
            while True:
                try:
                    batch = await sock.receive_many()
                    for data, sender in batch:
                        seen = senders.get(sender)
                        if seen is None:
                            if len(senders) > 10000:  # a flood of one-offs
                                senders.clear()
                            seen = senders[sender] = _Sender()
                            log.info(f"datagrams from {sender}")
                        seen.datagrams += 1
                        seen.nbytes += len(data)
                    await sock.send_many(batch)
                except OSError as exc:  # one bad datagram or peer must not stop us
                    log.info(f"error: {describe(exc)}")
    finally:
        for sender, seen in senders.items():
            log.detail(
                f"{sender}: {seen.datagrams} datagrams, {seen.nbytes} bytes "
                "received and sent back"
            )

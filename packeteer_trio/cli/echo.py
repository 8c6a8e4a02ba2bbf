"""``packeteer echo URL``: an echo server on any stream or datagram URL.

It always prints ``listening on URL`` (the bound address, real port included)
on stderr first, so scripts can start it on port 0 and read where it is.
"""

from __future__ import annotations

import argparse
import itertools
from typing import TYPE_CHECKING

import trio

from .. import Stream, listen
from .._api import serve_listeners
from ._common import (
    EXIT_OK,
    StdoutSink,
    can_send,
    describe,
    is_datagram,
    log,
    runtime_error,
    url_arg,
)
from ._streams import can_send_eof, connect_reply, peer_name

if TYPE_CHECKING:
    from ._common import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "echo",
        help="echo server on any stream or datagram URL",
        description="Echo every byte (or datagram) back to whoever sent it. "
        "Prints 'listening on URL' on stderr, then logs connects, disconnects "
        "and errors there. Ctrl-C stops it cleanly.",
    )
    parser.add_argument("url", type=url_arg, metavar="URL", help="where to listen")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="don't log connections and errors"
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
    if is_datagram(args.url):
        from ._datagrams import echo_datagrams

        return await echo_datagrams(args.url, quiet=args.quiet)
    listener = await listen(args.url)
    async with listener:
        log(f"listening on {listener.url}")
        numbers = itertools.count(1)
        stdout = StdoutSink()

        async def handler(stream: Stream) -> None:
            await echo_stream(stream, next(numbers), args, stdout)

        await serve_listeners(handler, [listener])
    return EXIT_OK


async def echo_stream(
    stream: Stream, number: int, args: argparse.Namespace, stdout: StdoutSink
) -> None:
    """Echo one connection until its end of file; log, never raise."""
    quiet = args.quiet
    log(f"#{number} connected: {peer_name(stream)}", quiet=quiet)
    start, total = trio.current_time(), 0
    reply: trio.abc.HalfCloseableStream | None = None
    try:
        async with stream:
            try:
                while True:
                    data = await stream.receive_some()
                    if reply is None:
                        # Connect the reply path only once the peer spoke (or
                        # left): a FIFO session starts before any writer came.
                        reply = await _reply_for(stream, args, stdout, number)
                    if not data:
                        break
                    total += len(data)
                    await reply.send_all(data)
                if can_send_eof(reply):  # TLS cannot: closing says it
                    await reply.send_eof()
            finally:
                if reply is not None and reply is not stream:
                    await reply.aclose()
    except BaseException as exc:
        error = runtime_error(exc)
        if error is None:
            raise
        log(f"#{number} error: {describe(error)}", quiet=quiet)
    seconds = trio.current_time() - start
    log(f"#{number} disconnected: {total} bytes in {seconds:.3f} s", quiet=quiet)


async def _reply_for(
    stream: Stream, args: argparse.Namespace, stdout: StdoutSink, number: int
) -> trio.abc.HalfCloseableStream:
    if args.reply is not None:
        return await connect_reply(args.reply)
    if can_send(stream):
        return stream
    log(
        f"#{number} {stream.url} is one-way: echoing to stdout "
        "(use --reply URL to send it back)",
        quiet=args.quiet,
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

"""``packeteer cat URL [--listen]``: netcat for every scheme.

stdin goes to the connector and the connector goes to stdout. End of file on
stdin is passed on as a half-close (``send_eof``), and cat exits once the
other side has finished too. A stream that cannot half-close (TLS) is read
until the peer closes or ``--linger`` seconds pass without data, then
closed. Datagram URLs go line by line: one datagram per line of stdin, one
line of stdout per datagram received.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import TYPE_CHECKING

import trio

from .. import Stream, connect, listen
from .._url import URL
from ._common import (
    EXIT_OK,
    SECONDS_OR_0,
    StdinSource,
    StdoutSink,
    can_receive,
    can_send,
    is_datagram,
    log,
    url_arg,
)
from ._streams import Linger, can_send_eof, connect_reply, copy

if TYPE_CHECKING:
    from ._common import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "cat",
        help="stdin/stdout to a connector (netcat for every scheme)",
        description="Connect to URL (or with --listen, accept one connection on "
        "it), copy stdin to it and what arrives to stdout. End of file on stdin "
        "half-closes the connection; cat exits when the peer has finished. "
        "Datagram URLs send one datagram per line.",
    )
    parser.add_argument("url", type=url_arg, metavar="URL")
    parser.add_argument(
        "-l",
        "--listen",
        action="store_true",
        help="listen on URL and serve one connection (prints 'listening on URL' "
        "on stderr); for datagrams, answer whoever sent last",
    )
    parser.add_argument(
        "--reply",
        type=url_arg,
        metavar="URL",
        help="receive on this second URL instead (listen on it, or with --listen "
        "connect to it): two one-way FIFOs make a two-way channel",
    )
    parser.add_argument(
        "--local",
        type=url_arg,
        metavar="URL",
        help="datagrams: the local address to bind (default: ephemeral port, or a "
        "temporary path for local://)",
    )
    parser.add_argument(
        "--linger",
        type=SECONDS_OR_0,
        default=1.0,
        metavar="SECONDS",
        help="after end of stdin, wait until this long passes without replies, "
        "then stop: for datagrams, and streams that cannot half-close such as "
        "tls+tcp:// (default: %(default)s)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="log less")
    parser.set_defaults(run=run, interrupt_code=EXIT_OK)


async def run(args: argparse.Namespace) -> int:
    if is_datagram(args.url):
        from ._datagrams import cat_datagrams

        return await cat_datagrams(args)
    async with AsyncExitStack() as stack:
        stdin, stdout = StdinSource(), StdoutSink()
        stack.push_async_callback(stdin.aclose)
        stack.push_async_callback(stdout.aclose)
        send_side, receive_side = await _open(args, stack)
        shared = args.reply is None
        await _pump(
            send_side, receive_side, stdin, stdout, shared=shared, linger=args.linger
        )
    return EXIT_OK


GetStream = Callable[[], Awaitable[Stream]]


async def _open(
    args: argparse.Namespace, stack: AsyncExitStack
) -> tuple[Stream, GetStream]:
    """The stream to send on, and how to get the one to receive on.

    Every stream opened is closed by *stack*.
    """

    async def accept_one(url: URL) -> Stream:
        # The listener stays open until cat ends: closing a FIFO's listener
        # removes the FIFO, and its writer may not have opened it yet.
        listener = await listen(url)
        stack.push_async_callback(listener.aclose)
        log(f"listening on {listener.url}")
        stream = await listener.accept()
        stack.push_async_callback(stream.aclose)
        return stream

    async def connect_to(url: URL) -> Stream:
        stream = await (connect(url) if args.reply is None else connect_reply(url))
        stack.push_async_callback(stream.aclose)
        return stream

    if args.reply is None:
        stream = await (accept_one(args.url) if args.listen else connect_to(args.url))
        return stream, partial(_ready, stream)
    if args.listen:
        return await connect_to(args.reply), partial(accept_one, args.url)
    # Listen for replies before speaking, so that they have somewhere to go;
    # the peer may connect back only once it has heard from us.
    replies = await listen(args.reply)
    stack.push_async_callback(replies.aclose)
    log(f"listening on {replies.url}")
    send = await connect_to(args.url)

    async def accept_reply() -> Stream:
        stream = await replies.accept()
        stack.push_async_callback(stream.aclose)
        return stream

    return send, accept_reply


async def _ready(stream: Stream) -> Stream:
    await trio.lowlevel.checkpoint()
    return stream


async def _pump(
    send_side: Stream,
    receive_side: GetStream,
    stdin: StdinSource,
    stdout: StdoutSink,
    *,
    shared: bool,
    linger: float,
) -> None:
    """stdin to *send_side*, the receive side to stdout; *shared* says whether
    both are the same stream."""
    lingering = Linger(linger)

    async def finish() -> None:
        if can_send_eof(send_side):
            await send_side.send_eof()
        elif not shared:
            await send_side.aclose()  # its own connection: closing it is the EOF
        else:
            lingering.start()  # TLS: the peer cannot be told, see Linger

    async with trio.open_nursery() as nursery:

        async def down() -> None:
            stream = await receive_side()
            if can_receive(stream):
                with lingering.scope:
                    while data := await stream.receive_some():
                        await stdout.write(data)
                        lingering.touch()
                nursery.cancel_scope.cancel()  # the peer has finished: so do we

        if can_send(send_side):
            nursery.start_soon(copy, stdin.read, send_side.send_all, finish)
        nursery.start_soon(down)

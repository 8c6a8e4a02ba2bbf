"""cat's stream half: connect or accept, then move the bytes.

One connection at a time is a *session*: stdin to the connection and the
connection to stdout (here), or a child process in their place (``--exec``,
:mod:`._exec`). End of file on stdin is passed on as a half-close
(``send_eof``), and the session ends once the peer has finished too. A
stream that cannot half-close (TLS) is read until the peer closes or
``--linger`` seconds pass without data, then closed.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import BinaryIO

import trio

import packeteer_trio as pt

from .._errors import UsageError, describe, runtime_error
from .._exit import EXIT_OK
from .._log import Log
from .._stdio import StdinSource, StdoutSink
from .._streams import (
    Silence,
    can_receive,
    can_send,
    can_send_eof,
    connect_reply,
    connect_within,
    local_name,
    peer_name,
)
from ._exec import exec_session

GetStream = Callable[[], Awaitable[pt.Stream]]
# -w: how much send_file moves between two touches of the idle timeout.
_SLICE = 1024 * 1024


@dataclasses.dataclass
class Counts:
    sent: int = 0
    received: int = 0


@dataclasses.dataclass
class Connection:
    """What one session talks to: where to send, and how to get the stream
    to receive from (with ``--reply``, a second connection, maybe not yet
    made); *shared* if both are the same stream."""

    number: int
    send: pt.Stream
    receive: GetStream
    shared: bool
    accepted: bool  # we listened (else we connected)


@dataclasses.dataclass
class Stdio:
    stdin: StdinSource
    stdout: StdoutSink


async def run_streams(args: argparse.Namespace) -> int:
    log = Log.of(args)
    if args.listen and args.keep_open and args.exec is not None:
        await _serve_concurrently(args, log)
        return EXIT_OK
    async with AsyncExitStack() as stack:
        stdio = None
        if args.exec is None:  # a child must not share a non-blocking stdout
            stdio = Stdio(StdinSource(), StdoutSink())
            stack.push_async_callback(stdio.stdin.aclose)
            stack.push_async_callback(stdio.stdout.aclose)
        if args.reply is not None:
            await session(await _open_with_reply(args, stack, log), args, log, stdio)
        elif args.listen:
            # The listener stays open until cat ends: closing a FIFO's listener
            # removes the FIFO, and its writer may not have opened it yet.
            listener = await pt.listen(args.url)
            stack.push_async_callback(listener.aclose)
            log.always(f"listening on {listener.url}")
            await _serve_in_turn(listener, args, log, stdio)
        else:
            stream = await connect_within(args.url, args.wait)
            stack.push_async_callback(stream.aclose)
            await session(_alone(1, stream, accepted=False), args, log, stdio)
    return EXIT_OK


def _alone(number: int, stream: pt.Stream, *, accepted: bool) -> Connection:
    async def ready() -> pt.Stream:
        await trio.lowlevel.checkpoint()
        return stream

    return Connection(number, stream, ready, shared=True, accepted=accepted)


async def _serve_in_turn(
    listener: pt.Listener, args: argparse.Namespace, log: Log, stdio: Stdio | None
) -> None:
    """One connection, or with ``-k`` one after the other (nc -lk): the next
    waits in the listen queue meanwhile. A failing connection ends cat unless
    ``-k``, which logs it and accepts the next."""
    for number in itertools.count(1):
        stream = await listener.accept()
        try:
            async with stream:
                await session(_alone(number, stream, accepted=True), args, log, stdio)
        except BaseException as exc:
            error = runtime_error(exc) if args.keep_open else None
            if error is None:
                raise
            log.info(f"#{number} error: {describe(error)}")
        if not args.keep_open:
            return


async def _serve_concurrently(args: argparse.Namespace, log: Log) -> None:
    """``-lk --exec``: a child per connection, all at once."""
    numbers = itertools.count(1)

    async def handler(stream: pt.Stream) -> None:
        number = next(numbers)
        try:
            await session(_alone(number, stream, accepted=True), args, log, None)
        except BaseException as exc:
            error = runtime_error(exc)
            if error is None:
                raise
            log.info(f"#{number} error: {describe(error)}")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(pt.serve, args.url, handler))
        log.always(f"listening on {listeners[0].url}")


async def _open_with_reply(
    args: argparse.Namespace, stack: AsyncExitStack, log: Log
) -> Connection:
    """Two one-way connections: send on one, receive on the other (FIFOs).

    Every stream opened is closed by *stack*.
    """

    async def accept_one(url: pt.URL) -> pt.Stream:
        listener = await pt.listen(url)
        stack.push_async_callback(listener.aclose)
        log.always(f"listening on {listener.url}")
        stream = await listener.accept()
        stack.push_async_callback(stream.aclose)
        return stream

    async def connect_to(url: pt.URL) -> pt.Stream:
        stream = await connect_reply(url)
        stack.push_async_callback(stream.aclose)
        return stream

    if args.listen:
        send = await connect_to(args.reply)
        receive = partial(accept_one, args.url)
        return Connection(1, send, receive, shared=False, accepted=True)
    # Listen for replies before speaking, so that they have somewhere to go;
    # the peer may connect back only once it has heard from us.
    replies = await pt.listen(args.reply)
    stack.push_async_callback(replies.aclose)
    log.always(f"listening on {replies.url}")
    send = await connect_to(args.url)

    async def accept_reply() -> pt.Stream:
        stream = await replies.accept()
        stack.push_async_callback(stream.aclose)
        return stream

    return Connection(1, send, accept_reply, shared=False, accepted=False)


async def session(
    conn: Connection, args: argparse.Namespace, log: Log, stdio: Stdio | None
) -> None:
    """Serve one connection; with ``-v`` say who came, and what moved."""
    if conn.shared:
        _check_directions(conn.send, args)
    name = peer_name(conn.send)
    where = "on" if conn.accepted else "from"
    log.detail(f"#{conn.number} connected: {name} {where} {local_name(conn.send)}")
    counts = Counts()
    start = trio.current_time()
    try:
        if stdio is None:
            await exec_session(args.exec, conn, args, counts, log)
        else:
            await _stdio_session(conn, stdio, args, counts)
    finally:
        log.detail(
            f"#{conn.number} disconnected: {name}: {counts.sent} bytes sent, "
            f"{counts.received} bytes received in {trio.current_time() - start:.3f} s"
        )


async def _send_file(
    send: pt.Stream, file: BinaryIO, counts: Counts, idle: Silence
) -> None:
    """stdin is a regular file: ``send_file`` from where it stands to its end
    (zero-copy where the stream allows). With ``-w`` in slices, so that data
    still moving keeps the idle timeout away."""
    slice_size = _SLICE if idle.active else None
    while True:
        sent = await send.send_file(file, offset=file.tell(), count=slice_size)
        counts.sent += sent
        idle.touch()
        if slice_size is None or sent < slice_size:
            return


def _check_directions(stream: pt.Stream, args: argparse.Namespace) -> None:
    """--send-only on an end that cannot send (a FIFO's reader) means nothing."""
    for wanted, able, what in (
        (args.send_only, can_send(stream), "send"),
        (args.receive_only, can_receive(stream), "receive"),
    ):
        if wanted and not able:
            raise UsageError(f"{stream.url}: this end cannot {what} (--{what}-only)")


async def _stdio_session(
    conn: Connection, stdio: Stdio, args: argparse.Namespace, counts: Counts
) -> None:
    """stdin to the connection, the connection to stdout."""
    send = conn.send
    linger = Silence(args.linger, started=False)
    idle = Silence(args.wait)

    async def finish() -> None:
        if can_send_eof(send):
            await send.send_eof()
        elif not conn.shared:
            await send.aclose()  # its own connection: closing it is the EOF
        else:
            linger.start()  # TLS: the peer cannot be told, see Silence
        if args.send_only:
            linger.start()  # what arrives is dropped: no need to wait for all

    async def up() -> None:
        if args.receive_only:
            if can_send_eof(send):
                await send.send_eof()  # half-closed at once, where it can
            return
        file = stdio.stdin.regular_file()
        if file is not None:
            with file:
                await _send_file(send, file, counts, idle)
            stdio.stdin.ended()
        while data := await stdio.stdin.read():
            idle.touch()
            await send.send_all(data)
            counts.sent += len(data)
        await finish()

    async def down() -> None:
        stream = await conn.receive()
        if not can_receive(stream):
            return
        with linger.scope:
            while data := await stream.receive_some():
                counts.received += len(data)
                idle.touch()
                linger.touch()
                if not args.send_only:
                    await stdio.stdout.write(data)
        nursery.cancel_scope.cancel()  # the peer has finished: so do we

    with idle.scope:
        async with trio.open_nursery() as nursery:
            if can_send(send):
                nursery.start_soon(up)
            nursery.start_soon(down)
    idle.check(str(send.url))

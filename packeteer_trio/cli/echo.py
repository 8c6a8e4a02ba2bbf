"""``packeteer echo URL``: an echo server on any stream or datagram URL.

It always prints ``listening on URL`` (the bound address, real port included)
on stderr first, so scripts can start it on port 0 and read where it is.
Streams: one task per connection, an end of file answered with an end of
file. Datagrams: each one goes back to its sender. ``--workers N`` serves
from N processes (``packeteer_trio.workers``), whose lines start with
``worker I (pid P):``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
from functools import partial
from typing import TYPE_CHECKING

import trio

import packeteer_trio as pt
from packeteer_trio import workers

from ._args import COUNT, url_arg
from ._errors import UsageError, describe, runtime_error
from ._exit import EXIT_FAILURE, EXIT_OK
from ._log import Log, log_one_line
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
    parser.add_argument(
        "--workers",
        type=COUNT,
        metavar="N",
        help="serve from N worker processes (POSIX), restarted if they die: "
        "with ?reuseport=1 (tcp, udp) each binds its own socket, else they "
        "share one bound here",
    )
    parser.set_defaults(run=run, interrupt_code=EXIT_OK)


async def run(args: argparse.Namespace) -> int:
    log = Log.of(args)
    if args.workers is not None:
        return await supervise(args, log)
    await serve_echo(args, log)
    return EXIT_OK


async def serve_echo(
    args: argparse.Namespace,
    log: Log,
    *,
    announce: bool = True,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The echo server on ``args.url``, until cancelled."""
    if is_datagram(args.url):
        await echo_datagrams(args.url, log, announce=announce, task_status=task_status)
        return
    numbers = itertools.count(1)
    stdout = StdoutSink()

    async def handler(stream: pt.Stream) -> None:
        await echo_stream(stream, next(numbers), args, stdout, log)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(pt.serve, args.url, handler))
        if announce:
            log.always(f"listening on {listeners[0].url}")
        task_status.started(listeners)


# -- --workers N ------------------------------------------------------------------


async def supervise(args: argparse.Namespace, log: Log) -> int:
    """``--workers N``: this process supervises N processes that echo."""
    if sys.platform == "win32":
        raise UsageError("--workers needs POSIX (descriptor passing)")
    reply = None if args.reply is None else str(args.reply)
    run = partial(
        workers.run,
        serve_worker,
        args.url,
        args.workers,
        args=[args.quiet, args.verbose, reply],
    )
    async with trio.open_nursery() as nursery:
        supervisor: workers.Supervisor = await nursery.start(run)
        log.always(f"listening on {supervisor.urls[0]}")
        pids = ", ".join(str(pid) for pid in supervisor.pids)
        log.info(f"{args.workers} workers: pid {pids}")
    return EXIT_OK


async def serve_worker(
    url: pt.URL,
    quiet: bool,
    verbose: bool,
    reply: str | None,
    *,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One worker process of ``echo --workers``: the echo server on *url*
    (its own socket, or the shared ``fd://listen/…``); its lines name it."""
    name = f"worker {os.environ.get(workers.ENV_INDEX, '?')}"
    log_one_line(f"packeteer echo: {name}")
    log = Log(quiet=quiet, verbose=verbose, prefix=f"{name} (pid {os.getpid()}): ")
    args = argparse.Namespace(
        url=url,
        quiet=quiet,
        verbose=verbose,
        reply=None if reply is None else pt.URL.parse(reply),
    )
    try:
        await serve_echo(args, log, announce=False, task_status=task_status)
    except BaseException as exc:
        error = runtime_error(exc)
        if error is None:
            raise
        log.always(f"error: {describe(error)}")  # one line, no traceback
        raise SystemExit(EXIT_FAILURE) from None


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


async def echo_datagrams(
    url: pt.URL,
    log: Log,
    *,
    announce: bool = True,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Answer every datagram to its sender, until interrupted."""
    sock = await pt.open_datagram(url)
    senders: dict[pt.URL, _Sender] = {}
    try:
        async with sock:
            if announce:
                log.always(f"listening on {sock.url}")
            task_status.started(sock)
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

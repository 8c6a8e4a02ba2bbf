"""The datagram halves of echo, cat, relay and bench.

A datagram has no connection and no end of file, so the stream ideas map
like this: echo answers every datagram to its sender; cat sends one datagram
per line of stdin and prints one line per datagram, then waits ``--linger``
seconds for late replies; relay gives every sender its own channel to the
target (closed after ``--idle`` seconds of silence); bench times round trips
and a pipelined burst.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import trio

from .. import DatagramSocket, connect_datagram, open_datagram
from .._url import URL, Query
from ._common import (
    EXIT_OK,
    AsyncLines,
    StdinSource,
    StdoutSink,
    describe,
    log,
    mb_per_s,
    runtime_error,
)

Channel = trio.abc.Channel[bytes]
WINDOW = 32  # datagrams in flight during bench's burst: well inside the buffers


@contextmanager
def local_binding(url: URL, given: URL | None) -> Iterator[URL | None]:
    """Our end's address for a connected datagram channel.

    A ``local://`` peer can only answer a sender that has an address. On Linux
    the core autobinds an abstract name; elsewhere we bind a temporary path.
    """
    if given is not None or url.scheme != "local" or sys.platform.startswith("linux"):
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="packeteer-") as tmp:
        path = str(Path(tmp) / "client.sock")
        yield URL("local", path=path, query=Query({"behaviour": "datagram"}))


def _line(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


# -- echo ---------------------------------------------------------------------


async def echo_datagrams(url: URL, *, quiet: bool) -> int:
    sock = await open_datagram(url)
    async with sock:
        log(f"listening on {sock.url}")
        seen: set[URL] = set()
        while True:
            try:
                batch = await sock.receive_many()
                for _, sender in batch:
                    if sender not in seen:
                        if len(seen) > 10000:
                            seen.clear()
                        seen.add(sender)
                        log(f"datagrams from {sender}", quiet=quiet)
                await sock.send_many(batch)
            except OSError as exc:  # one bad datagram or peer must not stop us
                log(f"error: {describe(exc)}", quiet=quiet)


# -- cat ----------------------------------------------------------------------


async def cat_datagrams(args: argparse.Namespace) -> int:
    stdin, stdout = StdinSource(), StdoutSink()
    try:
        if args.listen:
            await _cat_listen(args, stdin, stdout)
        else:
            await _cat_connect(args, stdin, stdout)
    finally:
        await stdin.aclose()
        await stdout.aclose()
    return EXIT_OK


async def _cat_connect(
    args: argparse.Namespace, stdin: StdinSource, stdout: StdoutSink
) -> None:
    with local_binding(args.url, args.local) as local:
        channel = await connect_datagram(args.url, local=local)
        async with channel:
            await _cat_channel(channel, args, stdin, stdout)


async def _cat_channel(
    channel: Channel, args: argparse.Namespace, stdin: StdinSource, stdout: StdoutSink
) -> None:
    async with trio.open_nursery() as nursery:
        # Receive until stdin is done and then --linger seconds pass quietly.
        waiting = trio.CancelScope()
        finished = False

        async def send_lines() -> None:
            nonlocal finished
            async for line in AsyncLines(stdin):
                await channel.send(line)
            finished = True
            waiting.deadline = trio.current_time() + args.linger

        nursery.start_soon(send_lines)
        with waiting:
            while True:
                await stdout.write(_line(await channel.receive()))
                if finished:
                    waiting.deadline = trio.current_time() + args.linger
        nursery.cancel_scope.cancel()


async def _cat_listen(
    args: argparse.Namespace, stdin: StdinSource, stdout: StdoutSink
) -> None:
    # Like `nc -u -l`: print what arrives, send stdin's lines to whoever sent
    # last, and keep going until interrupted.
    sock = await open_datagram(args.url)
    last: URL | None = None
    async with sock, trio.open_nursery() as nursery:
        log(f"listening on {sock.url}")

        async def send_lines() -> None:
            async for line in AsyncLines(stdin):
                if last is None:
                    log("nobody has sent anything yet: line dropped", quiet=args.quiet)
                else:
                    await sock.send_to(line, last)

        nursery.start_soon(send_lines)
        while True:
            data, last = await sock.receive_from()
            await stdout.write(_line(data))


# -- relay --------------------------------------------------------------------


@dataclasses.dataclass
class _Session:
    """One sender on the source side and its own channel to the target."""

    number: int
    sender: URL
    channel: Channel
    last: float  # trio.current_time() of the last datagram either way
    up: int = 0  # bytes sender -> target
    down: int = 0  # bytes target -> sender


async def relay_datagrams(args: argparse.Namespace) -> int:
    sock = await open_datagram(args.source)
    sessions: dict[URL, _Session] = {}
    numbers = itertools.count(1)
    with local_binding(args.target, None) as local:
        async with sock, trio.open_nursery() as nursery:
            log(f"listening on {sock.url}, relaying to {args.target}")
            while True:
                for data, sender in await sock.receive_many():
                    session = sessions.get(sender)
                    if session is None:
                        number = next(numbers)
                        try:
                            channel = await connect_datagram(
                                args.target, local=_unique(local, number)
                            )
                        except OSError as exc:
                            log(f"#{number} error: {describe(exc)}", quiet=args.quiet)
                            continue
                        session = _Session(number, sender, channel, 0.0)
                        sessions[sender] = session
                        log(f"#{number} new sender: {sender}", quiet=args.quiet)
                        nursery.start_soon(_replies, sock, session, sessions, args)
                    session.last = trio.current_time()
                    session.up += len(data)
                    try:
                        await session.channel.send(data)
                    except (OSError, trio.ClosedResourceError) as exc:
                        log(
                            f"#{session.number} error: {describe(exc)}",
                            quiet=args.quiet,
                        )


async def _replies(
    sock: DatagramSocket,
    session: _Session,
    sessions: dict[URL, _Session],
    args: argparse.Namespace,
) -> None:
    """Carry the target's replies back to the sender, until --idle seconds
    pass with no datagram either way."""
    start, number = trio.current_time(), session.number
    try:
        async with session.channel:
            while trio.current_time() < session.last + args.idle:
                with trio.move_on_at(session.last + args.idle):
                    data = await session.channel.receive()
                    session.last = trio.current_time()
                    session.down += len(data)
                    await sock.send_to(data, session.sender)
    except BaseException as exc:
        error = runtime_error(exc)
        if error is None:
            raise
        log(f"#{number} error: {describe(error)}", quiet=args.quiet)
    finally:
        del sessions[session.sender]
    log(f"#{number} closed: {session.sender}", quiet=args.quiet)
    if args.stats:
        seconds = trio.current_time() - start
        print(
            f"#{number} {session.sender} -> {args.target}: "
            f"{session.up} bytes up ({mb_per_s(session.up, seconds):.3f} MB/s), "
            f"{session.down} bytes down ({mb_per_s(session.down, seconds):.3f} MB/s) "
            f"in {seconds:.3f} s",
            flush=True,
        )


# -- bench --------------------------------------------------------------------


async def bench_datagrams(args: argparse.Namespace) -> int:
    with local_binding(args.url, None) as local:
        channels = [
            await connect_datagram(args.url, local=_unique(local, i))
            for i in range(args.connections)
        ]
        try:
            await _bench(channels, args)
        finally:
            for channel in channels:
                await channel.aclose()
    return EXIT_OK


async def _bench(channels: Sequence[Channel], args: argparse.Namespace) -> None:
    from .bench import report_latency

    print(f"bench {args.url}: {len(channels)} channel(s), datagrams", flush=True)
    log("bench: burst…")
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for channel in channels:
            nursery.start_soon(_burst, channel, args)
    seconds = trio.current_time() - start
    total = args.count * len(channels)
    print(
        f"throughput: {total} datagrams x {args.size} B in {seconds:.3f} s, "
        f"{total / seconds:.0f} datagrams/s, "
        f"{mb_per_s(total * args.size, seconds):.1f} MB/s",
        flush=True,
    )
    log("bench: round trips…")
    times: list[int] = []
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for channel in channels:
            nursery.start_soon(_round_trips, channel, args, times)
    report_latency(times, args.size, trio.current_time() - start)


def _unique(local: URL | None, index: int) -> URL | None:
    if local is None:
        return None
    return local.replace(path=f"{local.path}.{index}")


async def _burst(channel: Channel, args: argparse.Namespace) -> None:
    """Send --count datagrams with at most WINDOW unanswered at a time."""
    room = trio.Semaphore(WINDOW)
    message = bytes(args.size)

    async def send() -> None:
        for _ in range(args.count):
            await room.acquire()
            await channel.send(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        for received in range(args.count):
            with trio.move_on_after(args.timeout) as scope:
                await channel.receive()
            if scope.cancelled_caught:
                raise trio.TooSlowError(
                    f"{args.url}: no echo for {args.timeout:g} s after "
                    f"{received} of {args.count} datagrams (lost, or no echo server?)"
                )
            room.release()


async def _round_trips(
    channel: Channel, args: argparse.Namespace, times: list[int]
) -> None:
    message = bytes(args.size)
    clock = time.perf_counter_ns
    for _ in range(args.count):
        begin = clock()
        await channel.send(message)
        with trio.move_on_after(args.timeout) as scope:
            await channel.receive()
        if scope.cancelled_caught:
            raise trio.TooSlowError(f"{args.url}: no echo within {args.timeout:g} s")
        times.append(clock() - begin)

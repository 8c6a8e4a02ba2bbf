"""The timed loops shared by the stream comparisons, written once for any stream.

The same code drives ours and trio's: only the function that opens the two
ends differs. Both ends live in one trio run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import trio

from ._common import Timer

CHUNK = 65536
MESSAGE = b"x" * 64
_CHUNK_DATA = b"b" * CHUNK

#: Opens (sending end, receiving end) for a one-way transfer, or the two ends
#: of a two-way stream; closes them on exit.
OpenPair = Callable[
    [], AbstractAsyncContextManager[tuple[trio.abc.SendStream, trio.abc.ReceiveStream]]
]
OpenDuplex = Callable[
    [], AbstractAsyncContextManager[tuple[trio.abc.Stream, trio.abc.Stream]]
]


async def bulk(open_pair: OpenPair, total: int) -> float:
    """MB/s moving *total* bytes in 64 KiB writes from one end to the other."""
    async with open_pair() as (sender, receiver):
        received = 0

        async def send() -> None:
            for _ in range(total // CHUNK):
                await sender.send_all(_CHUNK_DATA)

        async def receive() -> None:
            nonlocal received
            while received < total:
                data = await receiver.receive_some(CHUNK)
                if not data:
                    break
                received += len(data)

        with Timer() as timer:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                nursery.start_soon(receive)
        assert received == total, (received, total)
    return total / timer.seconds / 1e6


async def echo(stream: trio.abc.Stream) -> None:
    """Send back whatever arrives until end of file or the peer goes away."""
    try:
        while data := await stream.receive_some(CHUNK):
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def exchange(stream: trio.abc.Stream, count: int) -> None:
    """*count* 64-byte round trips: send one message, read its echo back."""
    size = len(MESSAGE)
    for _ in range(count):
        await stream.send_all(MESSAGE)
        got = len(await stream.receive_some(size))
        while got < size:
            more = await stream.receive_some(size - got)
            if not more:
                raise trio.BrokenResourceError("the echo ended early")
            got += len(more)


async def ping_pong(open_duplex: OpenDuplex, count: int) -> float:
    """Round trips/s of 64-byte messages against an echo task on the other end."""
    async with open_duplex() as (client, server), trio.open_nursery() as nursery:
        nursery.start_soon(echo, server)
        await exchange(client, 10)  # warm up: both tasks running
        with Timer() as timer:
            await exchange(client, count)
        nursery.cancel_scope.cancel()
    return count / timer.seconds


async def self_ping_pong(open_pair: OpenPair, count: int) -> float:
    """Write 64 bytes then read them back, one task, through one pipe: per second."""
    async with open_pair() as (sender, receiver):
        size = len(MESSAGE)
        with Timer() as timer:
            for _ in range(count):
                await sender.send_all(MESSAGE)
                got = len(await receiver.receive_some(size))
                while got < size:
                    got += len(await receiver.receive_some(size - got))
    return count / timer.seconds


def run_trio(fn: Callable[[], Awaitable[float]]) -> Callable[[], float]:
    """A contender for :func:`measure`: a fresh trio run of *fn*."""

    def contender() -> float:
        return trio.run(fn)

    return contender


async def close_all(*resources: trio.abc.AsyncResource) -> None:
    with trio.CancelScope(shield=True):
        for resource in resources:
            await resource.aclose()

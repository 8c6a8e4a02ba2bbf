"""The demo's stream cases: a few MB through (checksummed), then round trips.

Every case drives the same two roles: a *server* that hashes a bulk upload,
answers with the digest and then echoes until end of file; and a *client*
that uploads, checks the digest, does the round trips and half-closes.
How the four ends are wired is what differs: a socket is one two-way stream
per side, a FIFO needs one FIFO each way, and a self-pipe reads back what it
writes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import time
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from typing import TypeVar

import trio

import packeteer_trio as pt

from .._streams import receive_exactly

CHUNK = 1 << 20  # bulk is sent in 1 MiB pieces of random bytes
MESSAGE = 64  # bytes per round trip
R = TypeVar("R", bound=trio.abc.AsyncResource)


class DemoFailure(Exception):
    """A case ran but got something wrong (bad checksum, missing EOF)."""


@dataclasses.dataclass
class Measures:
    url: str = ""
    round_trips: int = 0
    mb_per_s: float | None = None
    datagrams_per_s: float | None = None
    us_per_round_trip: float | None = None


@functools.lru_cache(maxsize=4)
def payload(nbytes: int) -> tuple[bytes, bytes]:
    """A random chunk, and the SHA-256 of *nbytes* made by repeating it."""
    chunk = os.urandom(min(CHUNK, nbytes))
    digest = hashlib.sha256()
    for offset in range(0, nbytes, CHUNK):
        digest.update(chunk[: min(CHUNK, nbytes - offset)])
    return chunk, digest.digest()


async def send_bulk(send: trio.abc.SendStream, nbytes: int) -> None:
    chunk, _ = payload(nbytes)
    with memoryview(chunk) as view:
        for offset in range(0, nbytes, CHUNK):
            await send.send_all(view[: min(CHUNK, nbytes - offset)])


async def hash_bulk(receive: trio.abc.ReceiveStream, nbytes: int) -> bytes:
    digest, got = hashlib.sha256(), 0
    while got < nbytes:
        data = await receive.receive_some(min(CHUNK, nbytes - got))
        if not data:
            raise DemoFailure(f"end of file after {got} of {nbytes} bulk bytes")
        digest.update(data)
        got += len(data)
    return digest.digest()


async def round_trips(
    send: trio.abc.SendStream, receive: trio.abc.ReceiveStream, count: int, m: Measures
) -> None:
    messages = [bytes([i]) * MESSAGE for i in range(256)]
    start = time.perf_counter()
    for i in range(count):
        message = messages[i & 255]
        await send.send_all(message)
        if await receive_exactly(receive, MESSAGE) != message:
            raise DemoFailure(f"round trip {i}: the echo differs")
    m.round_trips = count
    m.us_per_round_trip = (time.perf_counter() - start) / count * 1e6


async def server_role(
    receive: trio.abc.ReceiveStream, send: trio.abc.HalfCloseableStream, bulk: int
) -> None:
    await send.send_all(await hash_bulk(receive, bulk))
    while data := await receive.receive_some():
        await send.send_all(data)
    await send.send_eof()


async def client_role(
    send: trio.abc.HalfCloseableStream,
    receive: trio.abc.ReceiveStream,
    bulk: int,
    count: int,
    m: Measures,
) -> None:
    expected = payload(bulk)[1]  # before the clock starts
    start = time.perf_counter()
    await send_bulk(send, bulk)
    digest = await receive_exactly(receive, 32)
    m.mb_per_s = bulk / 1e6 / (time.perf_counter() - start)
    if digest != expected:
        raise DemoFailure("the bulk data arrived corrupted (SHA-256 differs)")
    await round_trips(send, receive, count, m)
    await send.send_eof()
    if await receive.receive_some() != b"":
        raise DemoFailure("expected end of file after the half-close")


async def socket_case(url: pt.URL, bulk: int, count: int, m: Measures) -> None:
    """tcp4, tcp6, local path/abstract: listen, connect, accept."""
    listener = await pt.listen(url)
    async with listener:
        m.url = str(listener.url)
        client = await pt.connect(listener.url)
        async with client:
            server = await listener.accept()
            async with server, trio.open_nursery() as nursery:
                nursery.start_soon(server_role, server, server, bulk)
                await client_role(client, client, bulk, count, m)


async def fifo_case(
    up: pt.URL, down: pt.URL, bulk: int, count: int, m: Measures
) -> None:
    """FIFOs are one-way: the listener's end reads, connect's end writes."""
    m.url = str(up)
    async with AsyncExitStack() as stack:

        async def opened(opening: Awaitable[R]) -> R:
            resource = await opening
            stack.push_async_callback(resource.aclose)
            return resource

        up_listener = await opened(pt.listen(up))
        down_listener = await opened(pt.listen(down))
        to_server = await opened(pt.connect(up))
        from_client = await opened(up_listener.accept())
        to_client = await opened(pt.connect(down))
        from_server = await opened(down_listener.accept())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server_role, from_client, to_client, bulk)
            await client_role(to_server, from_server, bulk, count, m)


async def self_pipe_case(url: pt.URL, bulk: int, count: int, m: Measures) -> None:
    """anon:// and unnamed local://: what is written reads back. The kernel
    buffer is small (64 KiB for a pipe), so the bulk needs a writer task and
    a reader task at once."""
    m.url = str(url)
    expected = payload(bulk)[1]
    async with await pt.connect(url) as stream:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_bulk, stream, bulk)
            digest = await hash_bulk(stream, bulk)
        m.mb_per_s = bulk / 1e6 / (time.perf_counter() - start)
        if digest != expected:
            raise DemoFailure("the bulk data read back corrupted (SHA-256 differs)")
        await round_trips(stream, stream, count, m)
        await stream.send_eof()
        if await stream.receive_some() != b"":
            raise DemoFailure("expected end of file after send_eof()")

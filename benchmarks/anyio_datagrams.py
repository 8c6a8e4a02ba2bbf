"""The anyio face's datagrams against anyio's own, on asyncio, uvloop and trio.

Ours: ``anyio_compat.open_datagram`` (the server) and ``connect_datagram``
(the client). Theirs: ``anyio.create_udp_socket`` + ``create_connected_udp_socket``,
``create_unix_datagram_socket`` + ``create_connected_unix_datagram_socket``.
Both ends in one ``anyio.run``:

- round trips: the client sends 64 bytes, an echo task on the server sends
  them back to the sender, the client waits for them;
- burst: the client sends 64-byte datagrams one way, in windows of
  :data:`WINDOW` (the next window once the server has received the last
  one: anyio's asyncio UDP socket drops datagrams beyond a queue of 100,
  and the kernel's buffer is bounded too); the server must receive every one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from packeteer_trio import anyio_compat as pa

from ._common import Config, Row, Timer, measure, rows_from, temp_dir, temp_path
from .anyio_layer import backends_here, contender

ROUND_TRIPS = 10_000
BURST = 50_000
WINDOW = 64
MESSAGE = b"x" * 64

Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes]]


class Pair:
    """A connected client and a bound server, as plain functions."""

    def __init__(
        self,
        client_send: Send,
        client_receive: Receive,
        server_receive: Callable[[], Awaitable[tuple[bytes, Any]]],
        server_send: Callable[[tuple[bytes, Any]], Awaitable[None]],
    ) -> None:
        self.client_send = client_send
        self.client_receive = client_receive
        self.server_receive = server_receive
        self.server_send = server_send


OpenPair = Callable[[], AbstractAsyncContextManager[Pair]]


async def _close(*resources: anyio.abc.AsyncResource) -> None:
    with anyio.CancelScope(shield=True):
        for resource in resources:
            await resource.aclose()


def ours(url: str) -> OpenPair:
    @asynccontextmanager
    async def open_pair() -> AsyncIterator[Pair]:
        server = await pa.open_datagram(url)
        client = await pa.connect_datagram(server.url)
        try:
            yield Pair(client.send, client.receive, server.receive, server.send)
        finally:
            await _close(client, server)

    return open_pair


def anyio_udp() -> OpenPair:
    @asynccontextmanager
    async def open_pair() -> AsyncIterator[Pair]:
        server = await anyio.create_udp_socket(local_host="127.0.0.1")
        port = server.extra(anyio.abc.SocketAttribute.local_port)
        client = await anyio.create_connected_udp_socket("127.0.0.1", port)
        try:
            yield Pair(client.send, client.receive, server.receive, server.send)
        finally:
            await _close(client, server)

    return open_pair


def anyio_unix(directory: str) -> OpenPair:
    @asynccontextmanager
    async def open_pair() -> AsyncIterator[Pair]:
        server_path = temp_path(directory, "anyio-server.sock")
        client_path = temp_path(directory, "anyio-client.sock")
        server = await anyio.create_unix_datagram_socket(local_path=server_path)
        client = await anyio.create_connected_unix_datagram_socket(
            server_path, local_path=client_path
        )
        try:
            yield Pair(client.send, client.receive, server.receive, server.send)
        finally:
            await _close(client, server)
            for path in (server_path, client_path):
                os.unlink(path)

    return open_pair


async def _echo(pair: Pair) -> None:
    receive, send = pair.server_receive, pair.server_send
    while True:
        await send(await receive())


async def _exchange(pair: Pair, count: int) -> None:
    send, receive = pair.client_send, pair.client_receive
    for _ in range(count):
        await send(MESSAGE)
        await receive()


async def round_trips(open_pair: OpenPair, count: int) -> float:
    async with open_pair() as pair, anyio.create_task_group() as group:
        group.start_soon(_echo, pair)
        await _exchange(pair, 10)
        with Timer() as timer:
            await _exchange(pair, count)
        group.cancel_scope.cancel()
    return count / timer.seconds


async def burst(open_pair: OpenPair, total: int) -> float:
    windows = total // WINDOW
    async with open_pair() as pair:
        received = 0
        done = [anyio.Event() for _ in range(windows)]

        async def send() -> None:
            client_send = pair.client_send
            for window in range(windows):
                for _ in range(WINDOW):
                    await client_send(MESSAGE)
                await done[window].wait()

        async def receive() -> None:
            nonlocal received
            server_receive = pair.server_receive
            for window in range(windows):
                for _ in range(WINDOW):
                    await server_receive()
                received += WINDOW
                done[window].set()

        with Timer() as timer:
            async with anyio.create_task_group() as group:
                group.start_soon(receive)
                group.start_soon(send)
        assert received == windows * WINDOW, (received, total)
    return received / timer.seconds


def _target(backend: str, fn: Callable[..., Any]) -> float:
    """Issue 22's, as for streams: round trips at 1.1x anyio's own on
    asyncio and 2x on uvloop; bursts, and all on trio, at least even."""
    if fn is round_trips:
        return {"uvloop": 2.0, "asyncio": 1.1}.get(backend, 1.0)
    return 1.0


def run(config: Config) -> list[Row]:
    rows: list[Row] = []
    count = config.work(ROUND_TRIPS, 100)
    total = config.work(BURST, 10 * WINDOW)
    backends = backends_here()
    with temp_dir() as directory:
        for backend in backends:
            socket_file = temp_path(directory, "ours.sock")
            local_url = f"local://{socket_file}?behaviour=datagram"
            pairs = {
                "udp": (ours("udp://127.0.0.1:0"), anyio_udp(), "anyio udp socket"),
                "local": (ours(local_url), anyio_unix(directory), "anyio unix socket"),
            }
            for scheme, (our_pair, their_pair, peer) in pairs.items():
                label = f"{scheme}:// ({backend})"
                for fn, work, what, unit in (
                    (round_trips, count, "64-byte round trips", "rt/s"),
                    (burst, total, f"64-byte burst (windows of {WINDOW})", "dg/s"),
                ):
                    results = measure(
                        config,
                        {
                            label: contender(backend, fn, our_pair, work),
                            peer: contender(backend, fn, their_pair, work),
                        },
                        label=f"{backend} {scheme} {what}",
                    )
                    rows += rows_from(
                        "anyio datagrams",
                        f"{backend}: {scheme} {what}",
                        unit,
                        results,
                        label,
                        [(peer, _target(backend, fn))],
                    )
    return rows

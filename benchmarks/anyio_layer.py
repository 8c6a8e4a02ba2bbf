"""The anyio face against anyio's own sockets, on asyncio, asyncio+uvloop and trio.

Ours: ``anyio_compat.listen`` + ``connect`` + ``accept``. Theirs:
``anyio.create_tcp_listener``/``create_unix_listener`` + ``connect_tcp``/
``connect_unix``. Both ends in one ``anyio.run``; bulk moves 64 KiB sends one
way, ping-pong sends 64 bytes and waits for the echo.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from packeteer_trio import anyio_compat as pa

from ._common import Config, Row, Timer, measure, rows_from, temp_dir, temp_path

BULK_BYTES = 256 * 1024 * 1024
ROUND_TRIPS = 10_000
CHUNK = 65536
MESSAGE = b"x" * 64
_CHUNK_DATA = b"b" * CHUNK

Duplex = tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]
OpenDuplex = Callable[[], AbstractAsyncContextManager[Duplex]]

BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


async def _close(*resources: anyio.abc.AsyncResource) -> None:
    with anyio.CancelScope(shield=True):
        for resource in resources:
            await resource.aclose()


def ours(url: str) -> OpenDuplex:
    @asynccontextmanager
    async def open_duplex() -> AsyncIterator[Duplex]:
        listener = await pa.listen(url)
        client = await pa.connect(listener.url)
        server = await listener.accept()
        try:
            yield client, server
        finally:
            await _close(client, server, listener)

    return open_duplex


def anyio_tcp() -> OpenDuplex:
    @asynccontextmanager
    async def open_duplex() -> AsyncIterator[Duplex]:
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
        [listener] = multi.listeners
        assert isinstance(listener, anyio.abc.SocketListener)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = await anyio.connect_tcp("127.0.0.1", port)
        server = await listener.accept()
        try:
            yield client, server
        finally:
            await _close(client, server, listener)

    return open_duplex


def anyio_unix(path: str) -> OpenDuplex:
    @asynccontextmanager
    async def open_duplex() -> AsyncIterator[Duplex]:
        listener = await anyio.create_unix_listener(path)
        client = await anyio.connect_unix(path)
        server = await listener.accept()
        try:
            yield client, server
        finally:
            await _close(client, server, listener)
            os.unlink(path)

    return open_duplex


async def bulk(open_duplex: OpenDuplex, total: int) -> float:
    async with open_duplex() as (sender, receiver):
        received = 0

        async def send() -> None:
            for _ in range(total // CHUNK):
                await sender.send(_CHUNK_DATA)
            await sender.send_eof()

        async def receive() -> None:
            nonlocal received
            try:
                while received < total:
                    received += len(await receiver.receive(CHUNK))
            except anyio.EndOfStream:
                pass

        with Timer() as timer:
            async with anyio.create_task_group() as group:
                group.start_soon(send)
                group.start_soon(receive)
        assert received == total, (received, total)
    return total / timer.seconds / 1e6


async def _echo(stream: anyio.abc.ByteStream) -> None:
    try:
        while True:
            await stream.send(await stream.receive(CHUNK))
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def _exchange(stream: anyio.abc.ByteStream, count: int) -> None:
    size = len(MESSAGE)
    for _ in range(count):
        await stream.send(MESSAGE)
        got = len(await stream.receive(size))
        while got < size:
            got += len(await stream.receive(size - got))


async def ping_pong(open_duplex: OpenDuplex, count: int) -> float:
    async with open_duplex() as (client, server), anyio.create_task_group() as group:
        group.start_soon(_echo, server)
        await _exchange(client, 10)
        with Timer() as timer:
            await _exchange(client, count)
        group.cancel_scope.cancel()
    return count / timer.seconds


def contender(
    backend: str, fn: Callable[..., Any], opener: Any, work: int
) -> Callable[[], float]:
    """One round of ``fn(opener, work)`` in a fresh ``anyio.run`` on *backend*
    (shared by the anyio benchmark modules)."""
    name, options = BACKENDS[backend]

    def run_once() -> float:
        result: float = anyio.run(
            fn, opener, work, backend=name, backend_options=options
        )
        return result

    return run_once


def backends_here() -> list[str]:
    """The names in BACKENDS this machine can run (uvloop is optional)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return [name for name in BACKENDS if name != "uvloop"]
    return list(BACKENDS)


def _target(backend: str, fn: Callable[..., Any]) -> float:
    """Issue 22's: round trips at 2x anyio's own on uvloop, 1.1x on asyncio
    (where the loop itself costs more); bulk at least even everywhere."""
    if fn is ping_pong:
        return {"uvloop": 2.0, "asyncio": 1.1}.get(backend, 1.0)
    return 1.0


def run(config: Config) -> list[Row]:
    rows: list[Row] = []
    total = config.work(BULK_BYTES // CHUNK, 16) * CHUNK
    count = config.work(ROUND_TRIPS, 100)
    backends = backends_here()
    with temp_dir() as directory:
        for backend in backends:
            pairs = {
                "tcp": (ours("tcp://127.0.0.1:0"), anyio_tcp(), "anyio connect_tcp"),
                "local": (
                    ours(f"local://{temp_path(directory, 'ours.sock')}"),
                    anyio_unix(temp_path(directory, "anyio.sock")),
                    "anyio connect_unix",
                ),
            }
            for scheme, (our_pair, their_pair, peer) in pairs.items():
                label = f"{scheme}:// ({backend})"
                for fn, work, what, unit in (
                    (bulk, total, "bulk, 64 KiB sends", "MB/s"),
                    (ping_pong, count, "64-byte round trips", "rt/s"),
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
                        "anyio",
                        f"{backend}: {scheme} {what}",
                        unit,
                        results,
                        label,
                        [(peer, _target(backend, fn))],
                    )
    return rows

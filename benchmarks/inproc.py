"""inproc:// against tcp:// and trio.testing.memory_stream_pair, in one run.

All three are ``trio.abc.Stream`` pairs in one trio run: ours over memory
(``listen`` + ``connect`` + ``accept`` on ``inproc://``), ours over the
loopback (``tcp://127.0.0.1``), and trio's in-memory test streams
(``memory_stream_pair``: unbounded buffers, no backpressure). Bulk moves
64 KiB writes one way, ping-pong sends 64 bytes and waits for the echo.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
import trio.testing

import packeteer_trio as pt

from ._common import Config, Row, measure, rows_from
from ._loops import OpenDuplex, bulk, close_all, ping_pong, run_trio

BULK_BYTES = 256 * 1024 * 1024
ROUND_TRIPS = 10_000
INPROC, TCP, MEMORY = "inproc://", "tcp://", "trio memory_stream_pair"


def ours(url: str) -> OpenDuplex:
    @asynccontextmanager
    async def open_duplex() -> AsyncIterator[tuple[trio.abc.Stream, trio.abc.Stream]]:
        listener = await pt.listen(url)
        client = await pt.connect(listener.url)
        server = await listener.accept()
        try:
            yield client, server
        finally:
            await close_all(client, server, listener)

    return open_duplex


def memory_pair() -> OpenDuplex:
    @asynccontextmanager
    async def open_duplex() -> AsyncIterator[tuple[trio.abc.Stream, trio.abc.Stream]]:
        client, server = trio.testing.memory_stream_pair()
        try:
            yield client, server
        finally:
            await close_all(client, server)

    return open_duplex


Work = Callable[[OpenDuplex], Awaitable[float]]


def contender(work: Work, open_duplex: OpenDuplex) -> Callable[[], float]:
    async def one() -> float:
        return await work(open_duplex)

    return run_trio(one)


def run(config: Config) -> list[Row]:
    total = config.work(BULK_BYTES // 65536, 16) * 65536
    count = config.work(ROUND_TRIPS, 100)
    pairs = {
        INPROC: ours("inproc://bench"),
        TCP: ours("tcp://127.0.0.1:0"),
        MEMORY: memory_pair(),
    }

    async def bulk_work(open_duplex: OpenDuplex) -> float:
        return await bulk(open_duplex, total)

    async def round_trip_work(open_duplex: OpenDuplex) -> float:
        return await ping_pong(open_duplex, count)

    rows: list[Row] = []
    for name, unit, work in (
        ("bulk, 64 KiB writes", "MB/s", bulk_work),
        ("64-byte round trips", "rt/s", round_trip_work),
    ):
        results = measure(
            config,
            {label: contender(work, pair) for label, pair in pairs.items()},
            label=f"inproc {name}",
        )
        rows += rows_from(
            "inproc",
            f"inproc {name}",
            unit,
            results,
            INPROC,
            [(MEMORY, None), (TCP, None)],
        )
    return rows

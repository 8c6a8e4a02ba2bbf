"""anon:// and fifo:// pipes against trio.lowlevel.FdStream over os.pipe().

Bulk moves 64 KiB writes through one pipe (a sending and a receiving task);
ping-pong uses two pipes, one each way, stapled into a two-way stream on
each side (``trio.StapledStream``, the same wrapper for both contenders)
with an echo task at the far end.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

import packeteer_trio as pt

from ._common import Config, Row, measure, rows_from, temp_dir, temp_path
from ._loops import OpenDuplex, OpenPair, bulk, close_all, ping_pong, run_trio

assert sys.platform != "win32", "POSIX only: FIFOs and trio.lowlevel.FdStream"

BULK_BYTES = 256 * 1024 * 1024
ROUND_TRIPS = 10_000
PEER = "FdStream(os.pipe())"

Pair = tuple[trio.abc.SendStream, trio.abc.ReceiveStream]
#: Opens one pipe: its (sending, receiving) ends and what to close after.
Make = Callable[[], Awaitable[tuple[Pair, list[trio.abc.AsyncResource]]]]


async def anon_pair() -> tuple[Pair, list[trio.abc.AsyncResource]]:
    stream = await pt.connect("anon://")
    return (stream, stream), [stream]


async def fd_pair() -> tuple[Pair, list[trio.abc.AsyncResource]]:
    read_fd, write_fd = os.pipe()
    sender, receiver = trio.lowlevel.FdStream(write_fd), trio.lowlevel.FdStream(read_fd)
    return (sender, receiver), [sender, receiver]


class FifoMaker:
    """Makes FIFOs with fresh names in one directory: (writer, reader) pairs."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._count = 0

    async def __call__(self) -> tuple[Pair, list[trio.abc.AsyncResource]]:
        self._count += 1
        url = f"fifo://{temp_path(self._directory, f'f{self._count}')}"
        listener = await pt.listen(url)
        writer = await pt.connect(url)
        reader = await listener.accept()
        return (writer, reader), [writer, reader, listener]


def one_way(make: Make) -> OpenPair:
    @asynccontextmanager
    async def open_pair() -> AsyncIterator[Pair]:
        pair, resources = await make()
        try:
            yield pair
        finally:
            await close_all(*resources)

    return open_pair


def two_way(make: Make) -> OpenDuplex:
    @asynccontextmanager
    async def open_duplex() -> AsyncIterator[tuple[trio.abc.Stream, trio.abc.Stream]]:
        (send_a, receive_a), first = await make()
        (send_b, receive_b), second = await make()
        try:
            yield (
                trio.StapledStream(send_a, receive_b),
                trio.StapledStream(send_b, receive_a),
            )
        finally:
            await close_all(*first, *second)

    return open_duplex


def run(config: Config) -> list[Row]:
    rows: list[Row] = []
    total = config.work(BULK_BYTES // 65536, 16) * 65536
    count = config.work(ROUND_TRIPS, 100)
    with temp_dir() as directory:
        makers: dict[str, Make] = {"anon": anon_pair, "fifo": FifoMaker(directory)}
        for scheme, make in makers.items():

            async def our_bulk(make: Make = make) -> float:
                return await bulk(one_way(make), total)

            async def their_bulk() -> float:
                return await bulk(one_way(fd_pair), total)

            results = measure(
                config,
                {"ours": run_trio(our_bulk), "trio": run_trio(their_bulk)},
                label=f"{scheme} bulk",
            )
            rows += rows_from(
                "pipes",
                f"{scheme} bulk, 64 KiB writes",
                "MB/s",
                {f"{scheme}://": results["ours"], PEER: results["trio"]},
                f"{scheme}://",
                [(PEER, 1.0)],
            )

            async def our_rt(make: Make = make) -> float:
                return await ping_pong(two_way(make), count)

            async def their_rt() -> float:
                return await ping_pong(two_way(fd_pair), count)

            results = measure(
                config,
                {"ours": run_trio(our_rt), "trio": run_trio(their_rt)},
                label=f"{scheme} ping-pong",
            )
            rows += rows_from(
                "pipes",
                f"{scheme} 64-byte round trips (2 pipes)",
                "rt/s",
                {f"{scheme}://": results["ours"], PEER: results["trio"]},
                f"{scheme}://",
                [(PEER, 1.0)],
            )
    return rows

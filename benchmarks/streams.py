"""tcp:// and local:// streams against trio.SocketStream.

Ours: ``listen`` + ``connect`` + ``accept``. Theirs: ``trio.open_tcp_listeners``
+ ``trio.open_tcp_stream`` (``trio.open_unix_socket`` and a
``trio.SocketListener`` for AF_UNIX). Both ends in one trio run; bulk moves
64 KiB writes one way, ping-pong sends 64 bytes and waits for the echo.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

import packeteer_trio as pt

from ._common import Config, Row, measure, rows_from, temp_dir, temp_path
from ._loops import OpenDuplex, bulk, close_all, ping_pong, run_trio

assert sys.platform != "win32", "POSIX only: local:// and trio.open_unix_socket"

BULK_BYTES = 256 * 1024 * 1024
ROUND_TRIPS = 10_000


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


def trio_tcp() -> OpenDuplex:
    @asynccontextmanager
    async def open_duplex() -> AsyncIterator[tuple[trio.abc.Stream, trio.abc.Stream]]:
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
        try:
            yield client, server
        finally:
            await close_all(client, server, listener)

    return open_duplex


def trio_unix(path: str) -> OpenDuplex:
    @asynccontextmanager
    async def open_duplex() -> AsyncIterator[tuple[trio.abc.Stream, trio.abc.Stream]]:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(path)
        sock.listen()
        listener = trio.SocketListener(sock)
        client = await trio.open_unix_socket(path)
        server = await listener.accept()
        try:
            yield client, server
        finally:
            await close_all(client, server, listener)
            os.unlink(path)

    return open_duplex


def run(config: Config) -> list[Row]:
    rows: list[Row] = []
    total = config.work(BULK_BYTES // 65536, 16) * 65536
    count = config.work(ROUND_TRIPS, 100)
    with temp_dir() as directory:
        pairs = {
            "tcp": (ours("tcp://127.0.0.1:0"), trio_tcp(), "trio open_tcp_stream"),
            "local": (
                ours(f"local://{temp_path(directory, 'ours.sock')}"),
                trio_unix(temp_path(directory, "trio.sock")),
                "trio open_unix_socket",
            ),
        }
        for scheme, (our_pair, their_pair, their_label) in pairs.items():

            async def our_bulk(open_duplex: OpenDuplex = our_pair) -> float:
                return await bulk(open_duplex, total)

            async def their_bulk(open_duplex: OpenDuplex = their_pair) -> float:
                return await bulk(open_duplex, total)

            results = measure(
                config,
                {"ours": run_trio(our_bulk), "trio": run_trio(their_bulk)},
                label=f"{scheme} bulk",
            )
            rows += rows_from(
                "streams",
                f"{scheme} bulk, 64 KiB writes",
                "MB/s",
                {f"{scheme}://": results["ours"], their_label: results["trio"]},
                f"{scheme}://",
                [(their_label, 1.0)],
            )

            async def our_rt(open_duplex: OpenDuplex = our_pair) -> float:
                return await ping_pong(open_duplex, count)

            async def their_rt(open_duplex: OpenDuplex = their_pair) -> float:
                return await ping_pong(open_duplex, count)

            results = measure(
                config,
                {"ours": run_trio(our_rt), "trio": run_trio(their_rt)},
                label=f"{scheme} ping-pong",
            )
            rows += rows_from(
                "streams",
                f"{scheme} 64-byte round trips",
                "rt/s",
                {f"{scheme}://": results["ours"], their_label: results["trio"]},
                f"{scheme}://",
                [(their_label, 1.25)],
            )
    return rows

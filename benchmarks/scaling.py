"""Cost growth: 1, 10, 100 and 1,000 concurrent tcp echo connections, ours vs trio's.

Both ends in one trio run: N client tasks each do 64-byte round trips
against N echo tasks, all released at once after every connection is up;
the figure is total round trips per second. If nothing grows worse than
linearly, the total stays roughly flat as N grows (one core does the work
either way), and the ratio ours/trio's stays put.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import trio

import packeteer_trio as pt

from ._common import Config, Row, Timer, measure, rows_from
from ._loops import close_all, echo, exchange

LEVELS = (1, 10, 100, 1000)
ROUND_TRIPS = 10_000  # in all, per level, split between the connections

#: (client ends, server ends, the listener)
Pairs = tuple[list[trio.abc.Stream], list[trio.abc.Stream], trio.abc.AsyncResource]


async def _ours_pairs(count: int) -> Pairs:
    listener = await pt.listen("tcp://127.0.0.1:0", backlog=count)
    clients: list[trio.abc.Stream] = []
    servers: list[trio.abc.Stream] = []
    for _ in range(count):
        clients.append(await pt.connect(listener.url))
        servers.append(await listener.accept())
    return clients, servers, listener


async def _trio_pairs(count: int) -> Pairs:
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=count)
    port = listener.socket.getsockname()[1]
    clients: list[trio.abc.Stream] = []
    servers: list[trio.abc.Stream] = []
    for _ in range(count):
        clients.append(await trio.open_tcp_stream("127.0.0.1", port))
        servers.append(await listener.accept())
    return clients, servers, listener


async def _load(
    opener: Callable[[int], Awaitable[Pairs]], count: int, per_connection: int
) -> float:
    clients, servers, listener = await opener(count)
    try:
        async with trio.open_nursery() as echoes:
            for server in servers:
                echoes.start_soon(echo, server)
            go = trio.Event()

            async def client(stream: trio.abc.Stream) -> None:
                await go.wait()
                await exchange(stream, per_connection)

            with Timer() as timer:
                async with trio.open_nursery() as clients_nursery:
                    for stream in clients:
                        clients_nursery.start_soon(client, stream)
                    go.set()
            echoes.cancel_scope.cancel()
    finally:
        await close_all(*clients, *servers, listener)
    return count * per_connection / timer.seconds


def run(config: Config) -> list[Row]:
    rows: list[Row] = []
    total = config.work(ROUND_TRIPS, 100)
    for level in LEVELS:
        per_connection = max(20, total // level)
        results = measure(
            config,
            {
                "tcp://": functools.partial(
                    trio.run, _load, _ours_pairs, level, per_connection
                ),
                "trio open_tcp_stream": functools.partial(
                    trio.run, _load, _trio_pairs, level, per_connection
                ),
            },
            label=f"scaling {level}",
        )
        rows += rows_from(
            "scaling",
            f"{level} concurrent echo connections, 64-byte round trips",
            "rt/s",
            results,
            "tcp://",
            [("trio open_tcp_stream", None)],
        )
    return rows

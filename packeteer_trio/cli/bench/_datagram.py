"""bench's datagram half: a pipelined burst, then round trips, on channels."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import trio

import packeteer_trio as pt

from .._exit import EXIT_OK
from .._progress import Bar, open_bar, tracking
from .._urls import local_binding, numbered
from ._report import Report

Channel = trio.abc.Channel[bytes]
WINDOW = 32  # datagrams in flight during the burst: well inside the buffers


class _Counter:
    n = 0


async def bench_datagrams(args: argparse.Namespace) -> int:
    bar = open_bar()
    try:
        with local_binding(args.url, None) as local:
            channels = [
                await pt.connect_datagram(args.url, local=numbered(local, i))
                for i in range(args.connections)
            ]
            try:
                await _bench(channels, args, bar)
            finally:
                for channel in channels:
                    await channel.aclose()
    finally:
        bar.close()
    return EXIT_OK


async def _bench(
    channels: Sequence[Channel], args: argparse.Namespace, bar: Bar
) -> None:
    report = Report(args.url, "datagram", len(channels), as_json=args.json)
    bar.note("bench: burst…")
    echoed = _Counter()
    total = args.count * len(channels)
    async with tracking(bar, "burst", total, "datagrams", lambda: echoed.n):
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for channel in channels:
                nursery.start_soon(_burst, channel, args, echoed)
        seconds = trio.current_time() - start
    report.datagram_throughput(total, args.size, seconds)
    bar.note("bench: round trips…")
    times: list[int] = []
    async with tracking(bar, "round trips", total, "round trips", lambda: len(times)):
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for channel in channels:
                nursery.start_soon(_round_trips, channel, args, times)
        seconds = trio.current_time() - start
    report.round_trips(times, args.size, seconds)
    report.finish()


async def _burst(channel: Channel, args: argparse.Namespace, echoed: _Counter) -> None:
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
            echoed.n += 1
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

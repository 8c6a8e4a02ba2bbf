"""``packeteer bench URL``: throughput and round-trip latency against an echo server.

Two phases on every connection at once: *throughput* pushes ``--bulk`` MB
through the echo server and reads it back (sender and reader run
concurrently); *latency* does ``--count`` round trips of ``--size`` bytes.
Self-echoing URLs (``anon://``, ``local://``) need no server at all.
"""

from __future__ import annotations

import argparse
import time
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import trio

from .. import Stream, connect
from ._common import (
    COUNT,
    EXIT_OK,
    SECONDS,
    US,
    Number,
    UsageError,
    can_receive,
    can_send,
    is_datagram,
    log,
    mb_per_s,
    url_arg,
)
from ._streams import receive_exactly

if TYPE_CHECKING:
    from ._common import Subparsers

CHUNK = 65536


# bytes(size) is allocated up front: an absurd size must be a usage error.
MAX_SIZE = 64 * 1024 * 1024


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="throughput and round-trip latency against an echo server",
        description="Measure MB/s and round-trip latency (p50/p99) against an "
        "echo server at URL (start one with 'packeteer echo URL').",
    )
    parser.add_argument("url", type=url_arg, metavar="URL")
    parser.add_argument(
        "--size",
        type=Number(int, least=1, most=MAX_SIZE),
        default=64,
        help="bytes per round trip, and per datagram (default: %(default)s)",
    )
    parser.add_argument(
        "--count",
        type=COUNT,
        default=10000,
        help="round trips per connection (default: %(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=COUNT,
        default=1,
        help="concurrent connections (default: %(default)s)",
    )
    parser.add_argument(
        "--bulk",
        type=Number(float, least=0),
        default=16.0,
        metavar="MB",
        help="MB pushed through each connection for throughput, 0 to skip "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=SECONDS,
        default=30.0,
        metavar="SECONDS",
        help="give up on a phase after this long (default: %(default)s)",
    )
    parser.set_defaults(run=run)


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[
        min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    ]


def report_latency(times_ns: list[int], size: int, seconds: float) -> None:
    """Print the round-trip line shared by streams and datagrams."""
    micros = sorted(t / 1000 for t in times_ns)
    print(
        f"round trips: {len(micros)} x {size} B in {seconds:.3f} s, "
        f"{len(micros) / seconds:.0f}/s; p50 {percentile(micros, 0.5):.1f} {US}, "
        f"p99 {percentile(micros, 0.99):.1f} {US}, "
        f"mean {sum(micros) / len(micros):.1f} {US}",
        flush=True,
    )


async def run(args: argparse.Namespace) -> int:
    if is_datagram(args.url):
        from ._datagrams import bench_datagrams

        return await bench_datagrams(args)
    bulk = int(args.bulk * 1e6)
    async with AsyncExitStack() as stack:
        streams: list[Stream] = []
        for _ in range(args.connections):
            stream = await connect(args.url)
            stack.push_async_callback(stream.aclose)
            if not (can_send(stream) and can_receive(stream)):
                raise UsageError(f"{args.url} is one-way: bench needs an echo")
            streams.append(stream)
        print(f"bench {streams[0].url}: {len(streams)} connection(s)", flush=True)
        if bulk > 0:
            log("bench: throughput…")
            with trio.fail_after(args.timeout):
                start = trio.current_time()
                async with trio.open_nursery() as nursery:
                    for stream in streams:
                        nursery.start_soon(_bulk, stream, bulk)
                seconds = trio.current_time() - start
            total = bulk * len(streams)
            print(
                f"throughput: {total / 1e6:.1f} MB each way in {seconds:.3f} s, "
                f"{mb_per_s(total, seconds):.1f} MB/s",
                flush=True,
            )
        log("bench: round trips…")
        times: list[int] = []
        with trio.fail_after(args.timeout):
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for stream in streams:
                    nursery.start_soon(_round_trips, stream, args, times)
            seconds = trio.current_time() - start
        report_latency(times, args.size, seconds)
    return EXIT_OK


async def _bulk(stream: Stream, nbytes: int) -> None:
    chunk = memoryview(bytes(range(256)) * (CHUNK // 256))

    async def send() -> None:
        sent = 0
        while sent < nbytes:
            piece = chunk[: min(CHUNK, nbytes - sent)]
            await stream.send_all(piece)
            sent += len(piece)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        got = 0
        while got < nbytes:
            data = await stream.receive_some(CHUNK)
            if not data:
                raise trio.BrokenResourceError(
                    f"{stream.url}: the echo ended after {got} of {nbytes} bytes"
                )
            got += len(data)


async def _round_trips(
    stream: Stream, args: argparse.Namespace, times: list[int]
) -> None:
    message = bytes(args.size)
    clock = time.perf_counter_ns
    for _ in range(args.count):
        start = clock()
        await stream.send_all(message)
        await receive_exactly(stream, args.size)
        times.append(clock() - start)

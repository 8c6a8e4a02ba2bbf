"""bench's stream half: bulk both ways at once, then round trips."""

from __future__ import annotations

import argparse
import time
from contextlib import AsyncExitStack

import trio

import packeteer_trio as pt

from .._errors import UsageError
from .._exit import EXIT_OK
from .._progress import open_bar, tracking
from .._streams import can_receive, can_send, receive_exactly
from ._report import Report

CHUNK = 65536


class _Counter:
    """Bytes read back so far, for the progress bar (one add per chunk)."""

    n = 0


async def bench_streams(args: argparse.Namespace) -> int:
    bulk = int(args.bulk * 1e6)
    bar = open_bar()
    try:
        async with AsyncExitStack() as stack:
            streams: list[pt.Stream] = []
            for _ in range(args.connections):
                stream = await pt.connect(args.url)
                stack.push_async_callback(stream.aclose)
                if not (can_send(stream) and can_receive(stream)):
                    raise UsageError(f"{args.url} is one-way: bench needs an echo")
                streams.append(stream)
            report = Report(streams[0].url, "stream", len(streams), as_json=args.json)
            if bulk > 0:
                bar.note("bench: throughput…")
                read = _Counter()
                total = bulk * len(streams)
                with trio.fail_after(args.timeout):
                    async with tracking(bar, "throughput", total, "B", lambda: read.n):
                        start = trio.current_time()
                        async with trio.open_nursery() as nursery:
                            for stream in streams:
                                nursery.start_soon(_bulk, stream, bulk, read)
                        seconds = trio.current_time() - start
                report.stream_throughput(total, seconds)
            bar.note("bench: round trips…")
            times: list[int] = []
            total = args.count * len(streams)
            with trio.fail_after(args.timeout):
                async with tracking(
                    bar, "round trips", total, "round trips", lambda: len(times)
                ):
                    start = trio.current_time()
                    async with trio.open_nursery() as nursery:
                        for stream in streams:
                            nursery.start_soon(_round_trips, stream, args, times)
                    seconds = trio.current_time() - start
            report.round_trips(times, args.size, seconds)
            report.finish()
    finally:
        bar.close()
    return EXIT_OK


async def _bulk(stream: pt.Stream, nbytes: int, read: _Counter) -> None:
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
            read.n += len(data)


async def _round_trips(
    stream: pt.Stream, args: argparse.Namespace, times: list[int]
) -> None:
    message = bytes(args.size)
    clock = time.perf_counter_ns
    for _ in range(args.count):
        start = clock()
        await stream.send_all(message)
        await receive_exactly(stream, args.size)
        times.append(clock() - start)

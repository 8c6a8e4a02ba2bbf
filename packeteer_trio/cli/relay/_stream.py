"""relay's stream half: one bridge per accepted connection.

Bytes are copied both ways (on Linux by ``splice(2)`` where both ends allow,
see :mod:`.._splice`); an end of file on one side is passed on as a
half-close to the other; where the other side cannot half-close (TLS), the
rest goes on until ``--linger`` seconds pass without data, then both close.
"""

from __future__ import annotations

import argparse
import itertools
from functools import partial

import trio

import packeteer_trio as pt

from .._errors import describe, runtime_error
from .._exit import EXIT_OK
from .._log import Log
from .._splice import splice_copy
from .._streams import (
    Silence,
    can_receive,
    can_send,
    can_send_eof,
    connect_within,
    copy,
    local_name,
    peer_name,
)
from .._units import mb_per_s


async def relay_streams(args: argparse.Namespace) -> int:
    log = Log.of(args)
    numbers = itertools.count(1)
    active = 0
    limit = args.max_connections

    async def handler(stream: pt.Stream) -> None:
        nonlocal active
        number = next(numbers)
        if limit is not None and active >= limit:
            log.info(
                f"#{number} refused: {peer_name(stream)}: {limit} connections "
                "already (--max-connections)"
            )
            return  # serve() closes it
        active += 1
        try:
            await relay_one(stream, number, args, log)
        finally:
            active -= 1

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(pt.serve, args.source, handler))
        log.always(f"listening on {listeners[0].url}, relaying to {args.target}")
    return EXIT_OK


async def relay_one(
    down: pt.Stream, number: int, args: argparse.Namespace, log: Log | None = None
) -> None:
    """Bridge one accepted connection to a new one to the target; never raise."""
    log = log or Log.of(args)
    wait: float | None = getattr(args, "wait", None)
    name = peer_name(down)
    if log.verbose:
        log.detail(f"#{number} connected: {name} on {local_name(down)}")
    else:
        log.info(f"#{number} connected: {name}")
    start = trio.current_time()
    counts = {"up": 0, "down": 0}
    try:
        async with down:
            up = await connect_within(args.target, wait)
            log.detail(f"#{number} connected to {args.target} from {local_name(up)}")
            linger = Silence(getattr(args, "linger", 1.0), started=False)
            idle = Silence(wait)
            # Both close outside the linger scope: a TLS stream closed while
            # cancelled skips its close_notify, which its peer sees as broken.
            async with up:
                with idle.scope, linger.scope:
                    async with trio.open_nursery() as nursery:
                        # A direction runs only if its reader can read and its
                        # writer can write (a FIFO end is one-way).
                        for source, sink, direction in (
                            (down, up, "up"),
                            (up, down, "down"),
                        ):
                            if can_receive(source) and can_send(sink):
                                nursery.start_soon(
                                    _copy, source, sink, counts, direction, linger, idle
                                )
            idle.check(name)
    except BaseException as exc:
        error = runtime_error(exc)
        if error is None:
            raise
        log.info(f"#{number} error: {describe(error)}")
    seconds = trio.current_time() - start
    if log.verbose:
        log.detail(
            f"#{number} disconnected: {name}: {counts['up']} bytes up, "
            f"{counts['down']} bytes down in {seconds:.3f} s"
        )
    else:
        log.info(f"#{number} disconnected: {name}")
    if getattr(args, "stats", False):
        print(
            f"#{number} {name} -> {args.target}: "
            f"{counts['up']} bytes up ({mb_per_s(counts['up'], seconds):.1f} MB/s), "
            f"{counts['down']} bytes down "
            f"({mb_per_s(counts['down'], seconds):.1f} MB/s) in {seconds:.3f} s",
            flush=True,
        )


async def _copy(
    source: pt.Stream,
    sink: pt.Stream,
    counts: dict[str, int],
    direction: str,
    linger: Silence,
    idle: Silence,
) -> None:
    def count(size: int) -> None:
        counts[direction] += size
        linger.touch()
        idle.touch()

    # On Linux the kernel moves the bytes itself where both ends allow it
    # (sockets and pipes, which can half-close).
    if await splice_copy(source, sink, count):
        return

    async def receive() -> bytes | bytearray:
        data = await source.receive_some()
        count(len(data))
        return data

    async def finish() -> None:
        if can_send_eof(sink):
            await sink.send_eof()
        else:
            linger.start()  # TLS: the sink's peer cannot be told, see Silence

    await copy(receive, sink.send_all, finish)

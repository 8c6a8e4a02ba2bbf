"""relay's datagram half: every sender gets its own channel to the target.

Replies on that channel go back to the sender; a sender is forgotten after
``--idle`` (or ``-w``) seconds of silence both ways.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools

import trio

import packeteer_trio as pt

from .._errors import describe, runtime_error
from .._log import Log
from .._units import mb_per_s
from .._urls import local_binding, numbered

Channel = trio.abc.Channel[bytes]
MAX_REFUSED_SEEN = 1000  # senders refused by --max-connections, logged once each


@dataclasses.dataclass
class _Session:
    """One sender on the source side and its own channel to the target."""

    number: int
    sender: pt.URL
    channel: Channel
    last: float  # trio.current_time() of the last datagram either way
    up: int = 0  # bytes sender -> target
    down: int = 0  # bytes target -> sender


async def relay_datagrams(args: argparse.Namespace) -> int:
    log = Log.of(args)
    idle = args.wait if args.wait is not None else args.idle
    sock = await pt.open_datagram(args.source)
    sessions: dict[pt.URL, _Session] = {}
    refused: set[pt.URL] = set()
    numbers = itertools.count(1)
    with local_binding(args.target, None) as local:
        async with sock, trio.open_nursery() as nursery:
            log.always(f"listening on {sock.url}, relaying to {args.target}")
            while True:
                for data, sender in await sock.receive_many():
                    session = sessions.get(sender)
                    if session is None:
                        limit = args.max_connections
                        if limit is not None and len(sessions) >= limit:
                            if sender not in refused:
                                if len(refused) >= MAX_REFUSED_SEEN:
                                    refused.clear()
                                refused.add(sender)
                                log.info(
                                    f"refused: {sender}: {limit} senders already "
                                    "(--max-connections), its datagrams are dropped"
                                )
                            continue
                        refused.discard(sender)
                        number = next(numbers)
                        try:
                            channel = await pt.connect_datagram(
                                args.target, local=numbered(local, number)
                            )
                        except OSError as exc:
                            log.info(f"#{number} error: {describe(exc)}")
                            continue
                        session = _Session(number, sender, channel, 0.0)
                        sessions[sender] = session
                        log.info(f"#{number} new sender: {sender}")
                        nursery.start_soon(
                            _replies, sock, session, sessions, args, idle, log
                        )
                    session.last = trio.current_time()
                    session.up += len(data)
                    try:
                        await session.channel.send(data)
                    except (OSError, trio.ClosedResourceError) as exc:
                        log.info(f"#{session.number} error: {describe(exc)}")


async def _replies(
    sock: pt.DatagramSocket,
    session: _Session,
    sessions: dict[pt.URL, _Session],
    args: argparse.Namespace,
    idle: float,
    log: Log,
) -> None:
    """Carry the target's replies back to the sender, until *idle* seconds
    pass with no datagram either way."""
    start, number = trio.current_time(), session.number
    try:
        async with session.channel:
            while trio.current_time() < session.last + idle:
                with trio.move_on_at(session.last + idle):
                    data = await session.channel.receive()
                    session.last = trio.current_time()
                    session.down += len(data)
                    await sock.send_to(data, session.sender)
    except BaseException as exc:
        error = runtime_error(exc)
        if error is None:
            raise
        log.info(f"#{number} error: {describe(error)}")
    finally:
        del sessions[session.sender]
    seconds = trio.current_time() - start
    if log.verbose:
        log.detail(
            f"#{number} closed: {session.sender}: {session.up} bytes up, "
            f"{session.down} bytes down in {seconds:.3f} s"
        )
    else:
        log.info(f"#{number} closed: {session.sender}")
    if args.stats:
        print(
            f"#{number} {session.sender} -> {args.target}: "
            f"{session.up} bytes up ({mb_per_s(session.up, seconds):.3f} MB/s), "
            f"{session.down} bytes down ({mb_per_s(session.down, seconds):.3f} MB/s) "
            f"in {seconds:.3f} s",
            flush=True,
        )

"""cat's datagram half: one datagram per line of stdin, one line per datagram.

A datagram has no connection and no end of file: after the end of stdin,
cat waits ``--linger`` seconds for late replies. ``cat --listen`` prints
what arrives and sends stdin's lines to whoever sent last, until
interrupted (like ``nc -u -l``). ``-w`` ends cat (exit 1) once that long
passes with no datagram either way.
"""

from __future__ import annotations

import argparse

import trio

import packeteer_trio as pt

from .._exit import EXIT_OK
from .._log import Log
from .._stdio import AsyncLines, StdinSource, StdoutSink
from .._streams import Silence
from .._urls import local_binding

Channel = trio.abc.Channel[bytes]


def _line(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


async def run_datagrams(args: argparse.Namespace) -> int:
    stdin, stdout = StdinSource(), StdoutSink()
    idle = Silence(args.wait)
    log = Log.of(args)
    try:
        with idle.scope:
            if args.listen:
                await _listen(args, stdin, stdout, idle, log)
            else:
                await _connect(args, stdin, stdout, idle, log)
        idle.check(str(args.url))
    finally:
        await stdin.aclose()
        await stdout.aclose()
    return EXIT_OK


async def _connect(
    args: argparse.Namespace,
    stdin: StdinSource,
    stdout: StdoutSink,
    idle: Silence,
    log: Log,
) -> None:
    with local_binding(args.url, args.local) as local:
        channel = await pt.connect_datagram(args.url, local=local)
        async with channel:
            log.detail(f"sending to {args.url} (local {local or 'automatic'})")
            await _channel(channel, args, stdin, stdout, idle, log)


async def _channel(
    channel: Channel,
    args: argparse.Namespace,
    stdin: StdinSource,
    stdout: StdoutSink,
    idle: Silence,
    log: Log,
) -> None:
    sent = received = 0  # bytes
    try:
        async with trio.open_nursery() as nursery:
            # Receive until stdin is done and then --linger seconds pass quietly.
            waiting = trio.CancelScope()
            finished = False

            async def send_lines() -> None:
                nonlocal finished, sent
                if not args.receive_only:
                    async for line in AsyncLines(stdin):
                        idle.touch()
                        await channel.send(line)
                        sent += len(line)
                finished = True
                if args.send_only:
                    waiting.cancel()  # no replies wanted: done
                waiting.deadline = trio.current_time() + args.linger

            nursery.start_soon(send_lines)
            with waiting:
                while True:
                    data = await channel.receive()
                    received += len(data)
                    idle.touch()
                    if not args.send_only:
                        await stdout.write(_line(data))
                    if finished:
                        waiting.deadline = trio.current_time() + args.linger
            nursery.cancel_scope.cancel()
    finally:
        log.detail(f"{args.url}: {sent} bytes sent, {received} bytes received")


async def _listen(
    args: argparse.Namespace,
    stdin: StdinSource,
    stdout: StdoutSink,
    idle: Silence,
    log: Log,
) -> None:
    sock = await pt.open_datagram(args.url)
    last: pt.URL | None = None
    seen: set[pt.URL] = set()
    async with sock, trio.open_nursery() as nursery:
        log.always(f"listening on {sock.url}")

        async def send_lines() -> None:
            if args.receive_only:
                return
            async for line in AsyncLines(stdin):
                idle.touch()
                if last is None:
                    log.info("nobody has sent anything yet: line dropped")
                else:
                    await sock.send_to(line, last)

        nursery.start_soon(send_lines)
        while True:
            data, last = await sock.receive_from()
            idle.touch()
            if last not in seen and len(seen) < 10000:
                seen.add(last)
                log.detail(f"datagrams from {last}")
            if not args.send_only:
                await stdout.write(_line(data))

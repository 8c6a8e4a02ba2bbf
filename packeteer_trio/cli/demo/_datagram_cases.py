"""The demo's datagram cases: round trips, then a pipelined burst.

A server socket echoes with ``receive_many``/``send_many`` (the fast path);
the client is a connected channel. Round trips are one datagram out, one
back; the burst keeps ``WINDOW`` datagrams in flight (well inside the kernel
buffers, so loopback loses none) and checks every echo by its sequence
number.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

import packeteer_trio as pt

from ._stream_cases import DemoFailure, Measures

Run = Callable[[Measures], Awaitable[None]]
Channel = trio.abc.Channel[bytes]
MESSAGE = 64  # bytes per round trip
BURST_SIZE = 1024  # bytes per datagram in the burst
WINDOW = 32
PATIENCE = 2.0  # seconds to wait for one echo before calling it lost


def _dgram(path: str = "") -> pt.URL:
    return pt.URL("local", path=path, query=pt.Query({"behaviour": "datagram"}))


def demo_cases(
    tmp: Path, count: int, has_ipv6: bool
) -> list[tuple[str, Run | None, str]]:
    """(scheme, run, reason to skip) for every datagram case of this platform."""

    def pair(server: pt.URL, client: pt.URL | None) -> Run:
        return lambda m: datagram_case(server, client, count, m)

    cases: list[tuple[str, Run | None, str]] = [
        ("udp4", pair(pt.URL.parse("udp4://127.0.0.1:0"), None), ""),
        ("udp6", pair(pt.URL.parse("udp6://[::1]:0"), None), ""),
    ]
    if not has_ipv6:
        cases[1] = ("udp6", None, "this host has no IPv6 loopback")
    if sys.platform == "win32":  # pragma: no cover
        return cases
    path = pair(_dgram(str(tmp / "d.sock")), _dgram(str(tmp / "c.sock")))
    cases.append(("local:path", path, ""))
    if sys.platform.startswith("linux"):
        name = f"/\0packeteer-demo-{os.getpid()}-{secrets.token_hex(4)}"
        cases.append(("local:abstract", pair(_dgram(name), _dgram(name + "-c")), ""))
    unnamed: Run = lambda m: self_pair_case(count, m)  # noqa: E731
    cases.append(("local:unnamed", unnamed, ""))
    return cases


async def echo(server: pt.DatagramSocket) -> None:
    while True:
        await server.send_many(await server.receive_many())


async def receive(channel: Channel, what: str) -> bytes:
    with trio.move_on_after(PATIENCE):
        return await channel.receive()
    raise DemoFailure(f"no {what} within {PATIENCE:g} s: a datagram was lost")


async def round_trips(channel: Channel, count: int, m: Measures) -> None:
    messages = [bytes([i]) * MESSAGE for i in range(256)]
    start = time.perf_counter()
    for i in range(count):
        await channel.send(messages[i & 255])
        if await receive(channel, "echo") != messages[i & 255]:
            raise DemoFailure(f"round trip {i}: the echo differs")
    m.round_trips = count
    m.us_per_round_trip = (time.perf_counter() - start) / count * 1e6


async def burst(channel: Channel, count: int, m: Measures) -> None:
    room = trio.Semaphore(WINDOW)
    padding = os.urandom(BURST_SIZE - 4)
    seen = bytearray(count)

    async def send() -> None:
        for i in range(count):
            await room.acquire()
            await channel.send(i.to_bytes(4, "big") + padding)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        for _ in range(count):
            data = await receive(channel, "echo in the burst")
            number = int.from_bytes(data[:4], "big")
            if data[4:] != padding or number >= count or seen[number]:
                raise DemoFailure("a datagram of the burst came back wrong")
            seen[number] = 1
            room.release()
    seconds = time.perf_counter() - start
    m.datagrams_per_s = count / seconds
    m.mb_per_s = count * BURST_SIZE / 1e6 / seconds


async def datagram_case(
    server_url: pt.URL, local: pt.URL | None, count: int, m: Measures
) -> None:
    """udp4, udp6, local path/abstract: an echoing socket and a channel to it."""
    server = await pt.open_datagram(server_url)
    async with server, trio.open_nursery() as nursery:
        m.url = str(server.url)
        nursery.start_soon(echo, server)
        channel = await pt.connect_datagram(server.url, local=local)
        async with channel:
            await round_trips(channel, count, m)
            await burst(channel, count, m)
        nursery.cancel_scope.cancel()


async def self_pair_case(count: int, m: Measures) -> None:
    """Unnamed local:// datagrams: what is sent is received back."""
    url = _dgram()
    m.url = str(url)
    async with await pt.connect_datagram(url) as channel:
        await round_trips(channel, count, m)
        await burst(channel, count, m)

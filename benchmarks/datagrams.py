"""A datagram echo server: ours (batched and plain) vs trio.socket vs blocking stdlib.

The server runs in this process, one kind at a time; the same separate
client process (:mod:`._dgram_client`: blocking stdlib sockets, a window of
requests in flight) loads each for the same time and reports replies per
second. The servers:

- ``receive_many + send_many``: ours, a batch in and the batch of replies
  out, one checkpoint each;
- ``receive_from + send_to``: ours, one datagram at a time;
- ``trio.socket``: ``await sock.recvfrom()`` / ``await sock.sendto()``;
- ``blocking stdlib``: ``sock.recvfrom()`` / ``sock.sendto()`` in a plain loop.

Every server stops at the client's ``STOP`` datagram (the last it sends).
"""

from __future__ import annotations

import functools
import os
import resource
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import trio

import packeteer_trio as pt

from ._common import Config, Row, measure, rows_from, temp_dir, temp_path

assert sys.platform != "win32", "POSIX only: local:// datagram sockets"

STOP = b"STOP"
SECONDS = 0.6
UDP_WINDOW = 32
# An AF_UNIX datagram socket queues at most net.unix.max_dgram_qlen (10 by
# default) datagrams: more in flight would block the client, not load us.
LOCAL_WINDOW = 8
_FAILSAFE = 10.0  # seconds beyond the run before a server gives up on STOP

Serve = Callable[[], None]


class Client:
    """The load generator process; one command per measurement."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", f"{__package__}._dgram_client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def start(self, command: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()

    def result(self) -> float:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the datagram client died")
        rate, _lost = line.split()
        return float(rate)

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(10)


class Target:
    """Where the servers listen and how the client reaches them."""

    def __init__(self, kind: str, mode: str, directory: str, seconds: float) -> None:
        self.kind = kind
        self.mode = mode
        self._directory = directory
        self._seconds = seconds
        self._count = 0

    def url(self) -> str:
        if self.kind == "udp":
            return "udp://127.0.0.1:0"
        return f"local://{self._path('srv')}?behaviour=datagram"

    def plain_socket(self) -> socket.socket:
        """A bound stdlib socket for the trio.socket and blocking servers."""
        if self.kind == "udp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(self._path("srv"))
        return sock

    def command(self, bound: Any) -> str:
        """The client's command for a server bound at *bound* (a sockaddr)."""
        if self.kind == "udp":
            host, port = bound
            return f"inet {host} {port} {UDP_WINDOW} {self._seconds} {self.mode}"
        client_path = self._path("cli")
        return f"unix {bound} {client_path} {LOCAL_WINDOW} {self._seconds} {self.mode}"

    def done(self, bound: Any) -> None:
        if self.kind != "udp" and isinstance(bound, str) and os.path.exists(bound):
            os.unlink(bound)

    def _path(self, stem: str) -> str:
        self._count += 1
        return temp_path(self._directory, f"{stem}{self._count}.sock")


def ours_batched(target: Target, client: Client) -> int:
    async def serve() -> int:
        served = 0
        async with await pt.open_datagram(target.url()) as sock:
            client.start(target.command(sock.socket.getsockname()))
            with trio.move_on_after(_FAILSAFE + target._seconds):
                while True:
                    batch = await sock.receive_many(64)
                    if batch[-1][0] == STOP:
                        break
                    await sock.send_many(batch)
                    served += len(batch)
        return served

    return trio.run(serve)


def ours_plain(target: Target, client: Client) -> int:
    async def serve() -> int:
        served = 0
        async with await pt.open_datagram(target.url()) as sock:
            client.start(target.command(sock.socket.getsockname()))
            with trio.move_on_after(_FAILSAFE + target._seconds):
                while True:
                    data, sender = await sock.receive_from()
                    if data == STOP:
                        break
                    await sock.send_to(data, sender)
                    served += 1
        return served

    return trio.run(serve)


def trio_socket(target: Target, client: Client) -> int:
    async def serve() -> int:
        served = 0
        with trio.socket.from_stdlib_socket(target.plain_socket()) as sock:
            bound = sock.getsockname()
            client.start(target.command(bound))
            with trio.move_on_after(_FAILSAFE + target._seconds):
                while True:
                    data, sender = await sock.recvfrom(65536)
                    if data == STOP:
                        break
                    await sock.sendto(data, sender)
                    served += 1
        target.done(bound)
        return served

    return trio.run(serve)


def blocking_stdlib(target: Target, client: Client) -> int:
    served = 0
    with target.plain_socket() as sock:
        # A kernel receive timeout as the fail-safe: no extra poll per call.
        timeout = struct.pack("ll", int(_FAILSAFE + target._seconds), 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
        bound = sock.getsockname()
        client.start(target.command(bound))
        recvfrom, sendto = sock.recvfrom, sock.sendto
        try:
            while True:
                data, sender = recvfrom(65536)
                if data == STOP:
                    break
                sendto(data, sender)
                served += 1
        except BlockingIOError:
            pass
    target.done(bound)
    return served


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(
    serve: Callable[[Target, Client], int],
    target: Target,
    client: Client,
    cpu: list[float],
) -> float:
    """Requests/s as the client saw them; this process's CPU us per request
    served (the server's whole run, warm-up and tail included) into *cpu*."""
    start = _cpu_seconds()
    served = serve(target, client)
    cpu.append((_cpu_seconds() - start) / max(served, 1) * 1e6)
    return client.result()


#: (family, client mode): see :mod:`._dgram_client` for the two modes.
KINDS = [
    ("udp", "connected"),
    ("udp", "sendto"),
    ("local", "connected"),
]

#: Each server runs until the client's STOP and returns how many it served.
SERVERS: dict[str, Callable[[Target, Client], int]] = {
    "receive_many + send_many": ours_batched,
    "receive_from + send_to": ours_plain,
    "trio.socket loop": trio_socket,
    "blocking stdlib loop": blocking_stdlib,
}


def run(config: Config) -> list[Row]:
    rows: list[Row] = []
    seconds = round(SECONDS * min(config.scale, 1.0), 2) or 0.1
    client = Client()
    try:
        with temp_dir() as directory:
            for kind, mode in KINDS:
                target = Target(kind, mode, directory, seconds)
                cpu: dict[str, list[float]] = {name: [] for name in SERVERS}
                contenders = {
                    name: functools.partial(_timed, serve, target, client, cpu[name])
                    for name, serve in SERVERS.items()
                }
                results = measure(config, contenders, label=f"{kind} {mode} echo")
                scheme = "udp://" if kind == "udp" else "local:// dgram"
                scheme += f", {mode} client"
                rows += rows_from(
                    "datagrams",
                    f"{scheme}: echo server, batched",
                    "req/s",
                    results,
                    "receive_many + send_many",
                    [("trio.socket loop", 3.0), ("blocking stdlib loop", 1.0)],
                )
                rows += rows_from(
                    "datagrams",
                    f"{scheme}: echo server, one at a time",
                    "req/s",
                    results,
                    "receive_from + send_to",
                    [("trio.socket loop", 1.25)],
                )
                rows += rows_from(
                    "datagrams",
                    f"{scheme}: server CPU per request, batched",
                    "us/req",
                    cpu,
                    "receive_many + send_many",
                    [("trio.socket loop", None), ("blocking stdlib loop", None)],
                    lower_is_better=True,
                )
                rows += rows_from(
                    "datagrams",
                    f"{scheme}: server CPU per request, one at a time",
                    "us/req",
                    cpu,
                    "receive_from + send_to",
                    [("trio.socket loop", None)],
                    lower_is_better=True,
                )
    finally:
        client.close()
    return rows

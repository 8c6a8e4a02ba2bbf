"""The anyio face's pipes (anon://, fifo://) on asyncio, uvloop and trio.

anyio has no pipe stream of its own, so the peers are, on asyncio and
uvloop: asyncio's own ``StreamReader``/``StreamWriter`` over
``connect_read_pipe``/``connect_write_pipe`` (the loop's pipe speed, behind
a thin anyio-shaped adapter), and the lean loops on anyio's waits
(``PipeStream``, built directly: the anyio face's pipes before issue 22);
on trio, trio's ``FdStream``. Both ends in one ``anyio.run``; bulk moves
64 KiB sends through one pipe, round trips send 64 bytes through one pipe
and wait for the echo through a second.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import trio
from anyio.streams.stapled import StapledByteStream

from packeteer_trio import URL
from packeteer_trio import anyio_compat as pa
from packeteer_trio._anyio._backend import current_backend
from packeteer_trio._anyio._stream import PipeStream
from packeteer_trio._endpoints import StreamEndpoint

from ._common import Config, Row, measure, rows_from, temp_dir, temp_path
from .anyio_layer import backends_here, bulk, contender, ping_pong

assert sys.platform != "win32", "POSIX only: FIFOs, and pipes on the anyio face"

BULK_BYTES = 256 * 1024 * 1024
ROUND_TRIPS = 10_000

#: (sending end, receiving end) of one pipe, and what to close after.
Ends = tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]
Make = Callable[[], Any]  # async () -> (Ends, list[AsyncResource])
Duplex = tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]


class _AsyncioPipe(anyio.abc.ByteStream):
    """asyncio's StreamReader/StreamWriter over one pipe, anyio-shaped."""

    def __init__(
        self,
        reader: asyncio.StreamReader | None,
        writer: asyncio.StreamWriter | None,
        read_transport: asyncio.BaseTransport | None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._read_transport = read_transport

    async def receive(self, max_bytes: int = 65536) -> bytes:
        assert self._reader is not None
        data = await self._reader.read(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        assert self._writer is not None
        self._writer.write(item)
        await self._writer.drain()

    async def send_eof(self) -> None:
        if self._writer is not None:
            self._writer.close()

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._read_transport is not None:
            self._read_transport.close()
        await anyio.lowlevel.checkpoint()


async def _asyncio_ends(read_fd: int, write_fd: int) -> Ends:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
    )
    write_transport, write_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(write_fd, "wb", 0)
    )
    writer = asyncio.StreamWriter(write_transport, write_protocol, None, loop)
    return (
        _AsyncioPipe(None, writer, None),
        _AsyncioPipe(reader, None, read_transport),
    )


class _FdPipe(anyio.abc.ByteStream):
    """trio's FdStream, anyio-shaped (under anyio's trio backend)."""

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(fd)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self._stream.receive_some(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        await self._stream.send_all(item)

    async def send_eof(self) -> None:
        await self._stream.aclose()

    async def aclose(self) -> None:
        await self._stream.aclose()


def _fifo_fds(path: str) -> tuple[int, int]:
    os.mkfifo(path)
    read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    write_fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    os.unlink(path)  # both ends are open: the name is no longer needed
    return read_fd, write_fd


class Fds:
    """Fresh (read fd, write fd) pairs: os.pipe(), or FIFOs in a directory."""

    def __init__(self, scheme: str, directory: str) -> None:
        self.scheme = scheme
        self._directory = directory
        self._count = 0

    def __call__(self) -> tuple[int, int]:
        if self.scheme == "anon":
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)
            return read_fd, write_fd
        self._count += 1
        return _fifo_fds(temp_path(self._directory, f"b{self._count}.fifo"))


def ours(scheme: str, directory: str) -> Make:
    count = 0

    async def make() -> tuple[Ends, list[anyio.abc.AsyncResource]]:
        nonlocal count
        if scheme == "anon":
            stream = await pa.connect("anon://")
            return (stream, stream), [stream]
        count += 1
        url = f"fifo://{temp_path(directory, f'o{count}.fifo')}"
        listener = await pa.listen(url)
        writer = await pa.connect(url)
        reader = await listener.accept()
        return (writer, reader), [writer, reader, listener]

    return make


def before(fds: Fds) -> Make:
    """The lean loops on anyio's waits, as the anyio face had them."""

    async def make() -> tuple[Ends, list[anyio.abc.AsyncResource]]:
        read_fd, write_fd = fds()
        url = URL.parse(f"{fds.scheme}://" if fds.scheme == "anon" else "fifo:///b")
        backend = current_backend()
        writer = PipeStream(StreamEndpoint(url, write_fd=write_fd), backend)
        reader = PipeStream(StreamEndpoint(url, read_fd=read_fd), backend)
        return (writer, reader), [writer, reader]

    return make


def asyncio_streams(fds: Fds) -> Make:
    async def make() -> tuple[Ends, list[anyio.abc.AsyncResource]]:
        writer, reader = await _asyncio_ends(*fds())
        return (writer, reader), [writer, reader]

    return make


def fd_stream(fds: Fds) -> Make:
    async def make() -> tuple[Ends, list[anyio.abc.AsyncResource]]:
        read_fd, write_fd = fds()
        writer, reader = _FdPipe(write_fd), _FdPipe(read_fd)
        return (writer, reader), [writer, reader]

    return make


async def _close(resources: list[anyio.abc.AsyncResource]) -> None:
    with anyio.CancelScope(shield=True):
        for resource in resources:
            await resource.aclose()


def one_way(make: Make) -> Callable[[], AbstractAsyncContextManager[Duplex]]:
    @asynccontextmanager
    async def open_pair() -> AsyncIterator[Duplex]:
        ends, resources = await make()
        try:
            yield ends
        finally:
            await _close(resources)

    return open_pair


def two_way(make: Make) -> Callable[[], AbstractAsyncContextManager[Duplex]]:
    @asynccontextmanager
    async def open_duplex() -> AsyncIterator[Duplex]:
        (send_a, receive_a), first = await make()
        (send_b, receive_b), second = await make()
        try:
            yield (
                StapledByteStream(send_a, receive_b),
                StapledByteStream(send_b, receive_a),
            )
        finally:
            await _close(first + second)

    return open_duplex


# Issue 22's, for pipes: round trips at 1.1x the lean loops on asyncio, 2x on
# uvloop; bulk at least even.
_TARGETS = {("asyncio", "rt"): 1.10, ("uvloop", "rt"): 2.0}


def run(config: Config) -> list[Row]:
    rows: list[Row] = []
    total = config.work(BULK_BYTES // 65536, 16) * 65536
    count = config.work(ROUND_TRIPS, 100)
    backends = backends_here()
    with temp_dir() as directory:
        for backend in backends:
            for scheme in ("anon", "fifo"):
                fds = Fds(scheme, directory)
                label = f"{scheme}:// ({backend})"
                if backend == "trio":
                    peers = {"FdStream": fd_stream(fds)}
                else:
                    peers = {
                        "PipeStream (before)": before(fds),
                        "asyncio pipe streams": asyncio_streams(fds),
                    }
                for fn, wrap, work, what, unit, key in (
                    (bulk, one_way, total, "bulk, 64 KiB sends", "MB/s", "bulk"),
                    (ping_pong, two_way, count, "64-byte round trips", "rt/s", "rt"),
                ):
                    mine = wrap(ours(scheme, directory))
                    contenders = {label: contender(backend, fn, mine, work)}
                    for peer, make in peers.items():
                        contenders[peer] = contender(backend, fn, wrap(make), work)
                    results = measure(
                        config, contenders, label=f"{backend} {scheme} {what}"
                    )
                    pairs: list[tuple[str, float | None]] = []
                    for peer in peers:
                        target = None
                        if peer.endswith("(before)"):
                            target = _TARGETS.get((backend, key), 1.0)
                        pairs.append((peer, target))
                    rows += rows_from(
                        "anyio pipes",
                        f"{backend}: {scheme} {what}",
                        unit,
                        results,
                        label,
                        pairs,
                    )
    return rows

"""The anyio face's pipes on asyncio loops read ahead (docs/anyio.md): the
loop reads the pipe into a bounded buffer, sends go straight to the kernel.

What that must not cost, and what PipeStream promised: memory under a fast
writer and a slow reader, flow control, bytes on cancellation, fairness,
one-way ends, a vanished reader, descriptors closed once, and the blocking
mode of a shared pipe. Each test runs on asyncio, uvloop and trio (where
the lean loops move the bytes: the same promises, kept by other means).
"""

from __future__ import annotations

import errno
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from packeteer_trio import anyio_compat as pa
from packeteer_trio._anyio._pipe_readahead import ReadAheadPipeStream
from packeteer_trio._anyio._readahead import BUDGET, HIGH_WATER, OP_COST, READ_SIZE
from packeteer_trio._anyio._stream import PipeStream

from .conftest import ANYIO_BACKENDS, open_fds

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.posix_only(
        reason="anon://, fifo:// on the anyio face are POSIX-only (docs/platforms.md)"
    ),
]


@pytest.fixture(scope="module", params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


KINDS = ["anon", "fifo", "local"]
Ends = tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]


def _on_asyncio(backend: Any) -> bool:
    return bool(backend != "trio")


@asynccontextmanager
async def _ends(kind: str, tmp_path: Path) -> AsyncIterator[Ends]:
    """(writing end, reading end) of one pipe: the same self-pipe stream for
    anon:// and the unnamed local://, a FIFO's writer and reader for fifo://."""
    if kind != "fifo":
        async with await pa.connect(f"{kind}://") as stream:
            yield stream, stream
        return
    url = f"fifo://{tmp_path}/p-{random.randrange(1 << 30)}"
    async with await pa.listen(url) as listener:
        reader = await listener.accept()
        writer = await pa.connect(url)
        async with reader, writer:
            yield writer, reader


def _buffered(stream: anyio.abc.ByteStream) -> int:
    """Bytes the loop has read ahead for *stream* (0 for the lean loops)."""
    return stream._buffered if isinstance(stream, ReadAheadPipeStream) else 0


async def _receive_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await stream.receive(size - len(data))
    return bytes(data)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_engine_per_loop(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """Read ahead on asyncio and uvloop; the lean loops on trio."""
    async with _ends(kind, tmp_path) as (writer, reader):
        for end in (writer, reader):
            if _on_asyncio(anyio_backend):
                assert isinstance(end, ReadAheadPipeStream)
            else:
                assert isinstance(end, PipeStream)
            assert isinstance(end, pa.Stream)
            assert not isinstance(end, anyio.abc.SocketStream)


async def test_files_keep_the_lean_loops(tmp_path: Path, anyio_backend: Any) -> None:
    """fd:// on a regular file or /dev/null (the loop cannot watch them):
    the lean loops, on every backend, and the bytes still come."""
    path = tmp_path / "data"
    path.write_bytes(b"file contents")
    fd = os.open(path, os.O_RDONLY)
    async with await pa.connect(f"fd:///{fd}") as stream:
        assert isinstance(stream, PipeStream)
        assert await _receive_exactly(stream, 13) == b"file contents"
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
    fd = os.open(os.devnull, os.O_WRONLY)
    async with await pa.connect(f"fd:///{fd}") as stream:
        assert isinstance(stream, PipeStream)
        await stream.send(b"into nothing")


@pytest.mark.parametrize("kind", KINDS)
async def test_fast_writer_slow_reader_bounded_buffer(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """16 MiB at full speed into a reader taking 4 KiB now and then: the
    loop reads ahead (on asyncio), what it holds never passes the high-water
    mark plus one read, and every byte arrives in order."""
    total = 16 << 20
    pattern = bytes(range(256)) * 256  # 64 KiB
    peak = 0
    async with _ends(kind, tmp_path) as (writer, reader):
        async with anyio.create_task_group() as group:

            async def produce() -> None:
                for _ in range(total // len(pattern)):
                    await writer.send(pattern)

            group.start_soon(produce)
            received = 0
            with anyio.fail_after(60):
                while received < total:
                    data = await reader.receive(4096)
                    expected = (pattern * 2)[received % len(pattern) :][: len(data)]
                    assert data == expected
                    received += len(data)
                    peak = max(peak, _buffered(reader))
                    if received % (1 << 20) < 4096:
                        await anyio.sleep(0.001)  # slow: the writer must wait
    assert peak <= HIGH_WATER + READ_SIZE, peak
    if _on_asyncio(anyio_backend):
        assert peak > 0  # it did read ahead


@pytest.mark.parametrize("kind", KINDS)
async def test_flow_control_stops_a_writer_nobody_reads(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """A reader that stops reading stops the writer (its send waits): the
    buffer stays bounded, the rest waits in the kernel, and reading again
    releases the writer with nothing lost."""
    sent = 0
    chunk = bytes(range(256)) * 256
    async with _ends(kind, tmp_path) as (writer, reader):
        async with anyio.create_task_group() as group:
            await writer.send(b"start")
            assert await reader.receive() == b"start"  # read-ahead has begun

            async def produce() -> None:
                nonlocal sent
                while True:
                    await writer.send(chunk)
                    sent += len(chunk)

            group.start_soon(produce)
            stalled_at = -1
            with anyio.fail_after(30):
                while sent != stalled_at:  # until 0.2 s pass without progress
                    stalled_at = sent
                    await anyio.sleep(0.2)
            assert _buffered(reader) <= HIGH_WATER + READ_SIZE
            assert sent < 8 << 20  # the buffer and the pipe's: bounded
            received = 0
            with anyio.fail_after(30):
                while sent == stalled_at:
                    data = await reader.receive()
                    assert data == (chunk * 2)[received % len(chunk) :][: len(data)]
                    received += len(data)
            group.cancel_scope.cancel()


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelled_receives_lose_nothing(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """Receives cancelled at random moments while 4 MiB stream in: bytes
    the loop had already read stay for the next receive, in order."""
    payload = os.urandom(4 << 20)
    rng = random.Random(kind)
    received = bytearray()
    cancelled = 0
    async with _ends(kind, tmp_path) as (writer, reader):
        async with anyio.create_task_group() as group:
            group.start_soon(writer.send, payload)
            with anyio.fail_after(60):
                while len(received) < len(payload):
                    with anyio.CancelScope() as scope:
                        if rng.random() < 0.5:
                            scope.cancel()  # before or while it waits
                        else:
                            deadline = anyio.current_time() + rng.random() / 5000
                            scope.deadline = deadline
                        received += await reader.receive(rng.choice([1, 100, 65536]))
                    cancelled += scope.cancelled_caught
    assert bytes(received) == payload
    assert cancelled > 10


@pytest.mark.parametrize("kind", KINDS)
async def test_a_send_cancelled_on_a_full_pipe_sent_nothing(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """With the pipe full, a cancelled send leaves no byte behind; the
    stream goes on working."""
    async with _ends(kind, tmp_path) as (writer, reader):
        filled = 0
        while True:  # fill the kernel's buffer: nobody reads yet
            with anyio.move_on_after(0.2) as scope:
                await writer.send(b"f" * 4096)
            if scope.cancelled_caught:
                break
            filled += 4096
        for _ in range(3):
            with anyio.move_on_after(0.05) as scope:
                await writer.send(b"x" * 1000)
            assert scope.cancelled_caught
        async with anyio.create_task_group() as group:
            group.start_soon(writer.send, b"!")
            assert await _receive_exactly(reader, filled + 1) == b"f" * filled + b"!"


@pytest.mark.parametrize("kind", KINDS)
async def test_operations_that_do_not_wait_still_yield(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """Small sends the kernel takes and receives of buffered bytes: another
    task still runs at least once per BUDGET such operations, and a
    cancelled scope stops a loop of them within BUDGET operations, before
    the bytes of the one it stops moved."""
    small = BUDGET // OP_COST
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with _ends(kind, tmp_path) as (writer, reader):
        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            await anyio.sleep(0.01)
            start = ticks
            for _ in range(small * 10):
                await writer.send(b"s")
            assert ticks - start >= 9
            received = 0
            start = ticks
            while received < small * 10:
                received += len(await reader.receive(1))
            assert ticks - start >= 9
            sent = 0
            with anyio.CancelScope() as scope:
                scope.cancel()
                for _ in range(small * 10):
                    await writer.send(b"c")
                    sent += 1
            assert scope.cancelled_caught
            assert sent < small
            await writer.send(b"!")
            assert await _receive_exactly(reader, sent + 1) == b"c" * sent + b"!"
            group.cancel_scope.cancel()


async def test_one_way_ends_and_eof(tmp_path: Path, anyio_backend: Any) -> None:
    """A FIFO's reader has no sending side and its writer no receiving side
    (ClosedResourceError naming the URL); send_eof closes the write end, so
    the reader sees end of file, and keeps seeing it."""
    async with _ends("fifo", tmp_path) as (writer, reader):
        with pytest.raises(anyio.ClosedResourceError, match="no sending side"):
            await reader.send(b"x")
        with pytest.raises(anyio.ClosedResourceError, match="no receiving side"):
            await writer.receive()
        with pytest.raises(anyio.ClosedResourceError, match="fifo://"):
            await writer.receive()
        await writer.send(b"last words")
        await writer.send_eof()
        await writer.send_eof()  # idempotent
        with pytest.raises(anyio.ClosedResourceError):
            await writer.send(b"more")
        assert await _receive_exactly(reader, 10) == b"last words"
        for _ in range(2):
            with pytest.raises(anyio.EndOfStream):
                await reader.receive()


@pytest.fixture
def sigpipes() -> Iterator[list[int]]:
    """Every SIGPIPE this process gets while the test runs."""
    if sys.platform == "win32":  # (the module is skipped there)
        pytest.skip("Windows has no SIGPIPE")
    caught: list[int] = []
    previous = signal.signal(
        signal.SIGPIPE, lambda number, frame: caught.append(number)
    )
    try:
        yield caught
    finally:
        signal.signal(signal.SIGPIPE, previous)


async def test_a_vanished_reader_is_a_broken_stream(
    tmp_path: Path, anyio_backend: Any, sigpipes: list[int]
) -> None:
    """The reader leaves, before a send and while one waits on a full pipe:
    BrokenResourceError naming the URL, also with a SIGPIPE handler
    installed (the kernel raises SIGPIPE for a pipe; the write still fails
    with EPIPE, which is what we report)."""
    async with _ends("fifo", tmp_path) as (writer, reader):
        await writer.send(b"x")
        assert await reader.receive() == b"x"
        await reader.aclose()
        with pytest.raises(anyio.BrokenResourceError, match="fifo://"):
            await writer.send(b"y")
    async with _ends("fifo", tmp_path) as (writer, reader):
        async with anyio.create_task_group() as group:

            async def blocked_send() -> None:
                with pytest.raises(anyio.BrokenResourceError, match="fifo://"):
                    await writer.send(b"z" * (4 << 20))

            group.start_soon(blocked_send)
            await anyio.sleep(0.1)  # the pipe is full: the send waits
            with anyio.fail_after(10):
                await reader.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_closing_wakes_and_refuses(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """aclose wakes a waiting receive and a waiting send with
    ClosedResourceError; afterwards both raise it at once."""
    async with _ends(kind, tmp_path) as (writer, reader):
        async with anyio.create_task_group() as group:

            async def blocked_receive() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await reader.receive()

            group.start_soon(blocked_receive)
            await anyio.wait_all_tasks_blocked()
            await reader.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await reader.receive()
    async with _ends(kind, tmp_path) as (writer, _reader):
        async with anyio.create_task_group() as group:

            async def blocked_send() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await writer.send(b"w" * (4 << 20))

            group.start_soon(blocked_send)
            await anyio.sleep(0.1)  # the pipe is full: the send waits
            await writer.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await writer.send(b"x")


@pytest.mark.parametrize("kind", KINDS)
async def test_two_tasks_one_direction_are_busy(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    async with _ends(kind, tmp_path) as (writer, reader):
        async with anyio.create_task_group() as group:
            group.start_soon(reader.receive)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await reader.receive()
            group.start_soon(writer.send, b"w" * (4 << 20))
            await anyio.sleep(0.1)  # the pipe is full: the send waits
            with pytest.raises(anyio.BusyResourceError):
                await writer.send(b"x")
            group.cancel_scope.cancel()


@pytest.mark.parametrize("kind", KINDS)
async def test_descriptors_closed_once(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """aclose closes each descriptor exactly once: a second aclose (and one
    after the numbers were handed out again) touches nobody else's file."""
    async with _ends(kind, tmp_path) as (writer, reader):
        await writer.send(b"read ahead")
        assert await reader.receive(4) == b"read"
    before = open_fds()
    async with _ends(kind, tmp_path) as (writer, reader):
        await writer.send(b"read ahead")
        assert await reader.receive(4) == b"read"  # the rest buffered
        await reader.aclose()
        await writer.aclose()
        reused = [os.pipe() for _ in range(4)]  # likely the numbers just freed
        try:
            await reader.aclose()
            await writer.aclose()
            for read_fd, write_fd in reused:
                os.write(write_fd, b"ok")
                assert os.read(read_fd, 2) == b"ok"
        finally:
            for pair in reused:
                for fd in pair:
                    os.close(fd)
    assert open_fds() == before


async def test_a_shared_pipe_keeps_its_blocking_mode(anyio_backend: Any) -> None:
    """fd:// on a pipe another copy of which someone else uses: read ahead
    while open, and the copy is blocking again once we closed ours."""
    if sys.platform == "win32":  # (the module is skipped there)
        pytest.skip("Windows pipes have no blocking mode to share")
    read_fd, write_fd = os.pipe()  # blocking, as a parent would hand it over
    copy = os.dup(read_fd)
    try:
        async with await pa.connect(f"fd:///{read_fd}") as stream:
            if _on_asyncio(anyio_backend):
                assert isinstance(stream, ReadAheadPipeStream)
            os.write(write_fd, b"through fd://")
            assert await _receive_exactly(stream, 13) == b"through fd://"
        assert os.get_blocking(copy)
        os.write(write_fd, b"!")
        assert os.read(copy, 1) == b"!"  # blocking read works again
    finally:
        os.close(copy)
        os.close(write_fd)
    with pytest.raises(OSError) as info:
        os.fstat(read_fd)
    assert info.value.errno == errno.EBADF


async def test_fifo_reader_waits_for_its_first_writer(
    tmp_path: Path, anyio_backend: Any
) -> None:
    """Before any writer came a FIFO reads 0 bytes: the read-ahead reader
    waits (no end of file) and then reads what the writers send, and sees
    end of file when the last one left."""
    url = f"fifo://{tmp_path}/first"
    async with await pa.listen(url) as listener, await listener.accept() as reader:
        with anyio.move_on_after(0.1) as scope:
            await reader.receive()
        assert scope.cancelled_caught
        first = await pa.connect(url)
        second = await pa.connect(url)
        await first.send(b"one ")
        await first.aclose()
        await second.send(b"two")
        assert await _receive_exactly(reader, 7) == b"one two"
        await second.aclose()
        with pytest.raises(anyio.EndOfStream):
            await reader.receive()

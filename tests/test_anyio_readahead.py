"""The anyio face's streams on asyncio loops read ahead (docs/anyio.md): the
loop reads into a bounded buffer, sends go straight to the kernel.

What that design must not cost: memory under a fast producer and a slow
consumer, flow control in both directions, bytes on cancellation, fairness
(an operation that does not wait still yields now and then, and notices
cancellation), descriptors passed with the bytes, and the reset a TCP peer
gets when we close with its bytes unread. Each test runs on asyncio, uvloop
and trio (where the lean loops of the trio face move the bytes: the same
promises, kept by other means).
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from packeteer_trio import anyio_compat as pa
from packeteer_trio._anyio._readahead import (
    BUDGET,
    HIGH_WATER,
    OP_COST,
    READ_SIZE,
    ReadAheadBuffer,
)

from .conftest import ANYIO_BACKENDS, open_fds, posix_only

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


KINDS = ["tcp", pytest.param("local", marks=posix_only)]
_PROACTOR = sys.platform == "win32"  # anyio's own streams there (docs/anyio.md)


def _url(kind: str, tmp_path: Path) -> str:
    if kind == "tcp":
        return "tcp://127.0.0.1:0"
    return f"local://{tmp_path}/s-{random.randrange(1 << 30)}.sock"


async def _pair(url: str) -> tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]:
    async with await pa.listen(url) as listener:
        client = await pa.connect(listener.url)
        server = await listener.accept()
    return client, server


def _buffered(stream: anyio.abc.ByteStream) -> int:
    """Bytes the loop has read ahead for *stream* (0 for the lean loops)."""
    return stream._buffered if isinstance(stream, ReadAheadBuffer) else 0


async def _receive_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await stream.receive(size - len(data))
    return bytes(data)


@pytest.mark.parametrize("kind", KINDS)
async def test_fast_producer_slow_consumer_bounded_buffer(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """32 MiB at full speed into a reader taking 4 KiB now and then: what
    we hold in memory never passes the high-water mark plus one read, and
    every byte arrives in order."""
    client, server = await _pair(_url(kind, tmp_path))
    total = 32 << 20
    pattern = bytes(range(256)) * 256  # 64 KiB
    peak = 0
    async with client, server, anyio.create_task_group() as group:

        async def produce() -> None:
            for _ in range(total // len(pattern)):
                await client.send(pattern)

        group.start_soon(produce)
        received = 0
        with anyio.fail_after(60):
            while received < total:
                data = await server.receive(4096)
                expected = (pattern * 2)[received % len(pattern) :][: len(data)]
                assert data == expected
                received += len(data)
                peak = max(peak, _buffered(server))
                if received % (1 << 20) < 4096:
                    await anyio.sleep(0.001)  # slow: the producer must wait
    assert peak <= HIGH_WATER + READ_SIZE, peak


@pytest.mark.parametrize("kind", KINDS)
async def test_flow_control_stops_a_producer_nobody_reads(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """A consumer that stops reading stops the producer (its send waits):
    the read-ahead buffer stays bounded and the rest waits in the kernel."""
    client, server = await _pair(_url(kind, tmp_path))
    sent = 0
    async with client, server, anyio.create_task_group() as group:
        await client.send(b"start")
        assert await server.receive() == b"start"  # read-ahead has begun

        async def produce() -> None:
            nonlocal sent
            chunk = b"p" * 65536
            while True:
                await client.send(chunk)
                sent += len(chunk)

        group.start_soon(produce)
        stalled_at = -1
        with anyio.fail_after(30):
            while sent != stalled_at:  # until a whole 0.2 s passes without progress
                stalled_at = sent
                await anyio.sleep(0.2)
        assert _buffered(server) <= HIGH_WATER + READ_SIZE
        # Reading again releases the producer.
        with anyio.fail_after(30):
            while sent == stalled_at:
                await server.receive()
        group.cancel_scope.cancel()


@pytest.mark.parametrize("kind", KINDS)
async def test_both_directions_at_once(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """Each side sends 8 MiB while receiving 8 MiB: no deadlock, nothing lost."""
    client, server = await _pair(_url(kind, tmp_path))
    size = 8 << 20
    payloads = {id(client): os.urandom(size), id(server): os.urandom(size)}
    got: dict[int, bytes] = {}

    async def receive(receiver: anyio.abc.ByteStream) -> None:
        got[id(receiver)] = await _receive_exactly(receiver, size)

    async with client, server:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for sender, receiver in ((client, server), (server, client)):
                    group.start_soon(sender.send, payloads[id(sender)])
                    group.start_soon(receive, receiver)
    assert got[id(server)] == payloads[id(client)]
    assert got[id(client)] == payloads[id(server)]


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelled_receives_lose_nothing(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """Receives cancelled at random moments while 4 MiB stream in: the bytes
    the loop had already read stay for the next receive, in order."""
    client, server = await _pair(_url(kind, tmp_path))
    payload = os.urandom(4 << 20)
    rng = random.Random(kind)
    received = bytearray()
    cancelled = 0
    async with client, server, anyio.create_task_group() as group:
        group.start_soon(client.send, payload)
        with anyio.fail_after(60):
            while len(received) < len(payload):
                with anyio.CancelScope() as scope:
                    if rng.random() < 0.5:
                        scope.cancel()  # before or while it waits
                    else:
                        scope.deadline = anyio.current_time() + rng.random() / 5000
                    received += await server.receive(rng.choice([1, 100, 65536]))
                cancelled += scope.cancelled_caught
    assert bytes(received) == payload
    assert cancelled > 10


@pytest.mark.parametrize("kind", KINDS)
async def test_operations_that_do_not_wait_still_yield(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """Small sends that never wait (the kernel takes them) and receives of
    buffered bytes: another task still runs at least once per BUDGET
    such operations, and a cancelled scope stops the loop within BUDGET
    operations, before the bytes of the one it stops moved."""
    client, server = await _pair(_url(kind, tmp_path))
    small = BUDGET // OP_COST  # operations of a few bytes per forced yield
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with client, server, anyio.create_task_group() as group:
        group.start_soon(ticker)
        await anyio.sleep(0.01)
        start = ticks
        for _ in range(small * 10):
            await client.send(b"s")
        assert ticks - start >= 9
        received = 0
        start = ticks
        while received < small * 10:
            received += len(await server.receive(1))
        assert ticks - start >= 9
        sent = 0
        with anyio.CancelScope() as scope:
            scope.cancel()
            for _ in range(small * 10):
                await client.send(b"c")
                sent += 1
        assert scope.cancelled_caught
        assert sent < small
        # Exactly the sends that returned went out.
        await client.send(b"!")
        assert await _receive_exactly(server, sent + 1) == b"c" * sent + b"!"
        group.cancel_scope.cancel()


@pytest.mark.parametrize("kind", KINDS)
async def test_closing_with_unread_bytes(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """Closed with the peer's bytes unread (read ahead or not): over TCP the
    peer sees a reset, as the kernel makes it for unread bytes; closed with
    everything read, a clean end of stream."""
    client, server = await _pair(_url(kind, tmp_path))
    async with client:
        await client.send(b"first")
        assert await server.receive() == b"first"
        await client.send(b"unread")
        await anyio.sleep(0.05)  # the loop reads it ahead
        await server.aclose()
        await anyio.sleep(0.05)
        if kind == "tcp" and not _PROACTOR:
            with pytest.raises(anyio.BrokenResourceError):
                await client.receive()
        else:  # AF_UNIX: bytes read ahead count as read (docs/anyio.md); on
            # Windows' proactor anyio's own stream, whose transport read them
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await client.receive()
    client, server = await _pair(_url(kind, tmp_path))
    async with client:
        await client.send(b"all of it")
        assert await _receive_exactly(server, 9) == b"all of it"
        await server.aclose()
        with pytest.raises(anyio.EndOfStream):
            await client.receive()


@posix_only
async def test_descriptors_stay_with_their_bytes(
    tmp_path: Path, anyio_backend: Any
) -> None:
    """Descriptors a peer passes while the loop reads ahead are kept for
    receive_fds; ones that came with bytes receive() took are closed, not
    leaked (recv() would drop them the same way)."""
    client, server = await _pair(_url("local", tmp_path))
    assert isinstance(client, anyio.abc.UNIXSocketStream)
    assert isinstance(server, anyio.abc.UNIXSocketStream)
    before = open_fds()
    async with client, server:
        await client.send(b"go")
        assert await server.receive() == b"go"  # read-ahead has begun
        read_end, write_end = os.pipe()
        try:
            await client.send_fds(b"fd", [write_end])
            await client.send(b"plain")
            await anyio.sleep(0.05)  # read ahead, descriptor and all
            message, fds = await server.receive_fds(2, 1)
            assert message == b"fd"
            assert len(fds) == 1
            os.write(fds[0], b"!")
            assert os.read(read_end, 1) == b"!"
            os.close(fds[0])
            assert await _receive_exactly(server, 5) == b"plain"
            await client.send_fds(b"ignored", [write_end])
            assert await _receive_exactly(server, 7) == b"ignored"
        finally:
            os.close(read_end)
            os.close(write_end)
    if sys.platform != "win32":
        assert open_fds() == before - 2

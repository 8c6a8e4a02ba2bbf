"""``stream.send_file``: byte-exact over every stream kind, on the zero-copy
path and on the copy loops, with backpressure, cancellation, and bad input.

A few MiB per test (the 64 MiB comparison is ``benchmarks/sendfile.py``).
"""

from __future__ import annotations

import errno
import io
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import BinaryIO

import pytest
import trio
import trio.testing
import trustme

import packeteer_trio as pt
import packeteer_trio._sendfile as _sendfile
from packeteer_trio import Stream, tls

from .conftest import open_fds, posix_only
from .test_streams import split

pytestmark = pytest.mark.trio

SIZE = 3 * 1024 * 1024 + 12345  # not a multiple of anything
BIG = 16 * 1024 * 1024  # enough to fill any socket buffer we shrink
TIMEOUT = 60


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def path(tmp_path: Path, data: bytes) -> Path:
    file = tmp_path / "data.bin"
    file.write_bytes(data)
    return file


@pytest.fixture(params=["zero-copy", "copy"])
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both loops of the descriptor streams: ``copy`` makes os.sendfile refuse
    (as a file system without sendfile support does), so the read + write
    loop takes over."""
    if request.param == "copy":
        calls: list[int] = []

        def refuse(out_fd: int, in_fd: int, position: int, size: int) -> int:
            calls.append(size)
            raise OSError(errno.EINVAL, "no sendfile here")

        monkeypatch.setattr(_sendfile, "_sendfile", refuse)
    return str(request.param)


async def socket_pair(url: str) -> tuple[Stream, Stream]:
    async with await pt.listen(url) as listener:
        client = await pt.connect(listener.url)
        server = await listener.accept()
    return client, server


@asynccontextmanager
async def pair(kind: str, tmp_path: Path) -> AsyncIterator[tuple[Stream, Stream]]:
    """(sender, receiver) of one stream kind; both closed afterwards. A test
    that hangs fails instead."""
    with trio.fail_after(TIMEOUT):
        async with pair_unbounded(kind, tmp_path) as streams:
            yield streams


@asynccontextmanager
async def pair_unbounded(
    kind: str, tmp_path: Path
) -> AsyncIterator[tuple[Stream, Stream]]:
    async with AsyncExitStack() as stack:
        if kind in ("tcp", "local"):
            local = f"local://{tmp_path}/s.sock"
            send, receive = await socket_pair(
                "tcp://127.0.0.1:0" if kind == "tcp" else local
            )
        elif kind == "anon":
            send, receive = split(await pt.connect("anon://"))
        else:
            assert kind == "fifo"
            listener = await stack.enter_async_context(
                await pt.listen(f"fifo://{tmp_path}/f")
            )
            send = await pt.connect(listener.url)
            receive = await listener.accept()
        stack.push_async_callback(send.aclose)
        stack.push_async_callback(receive.aclose)
        yield send, receive


KINDS = [
    "tcp",
    pytest.param("local", marks=posix_only),
    "anon",
    pytest.param("fifo", marks=posix_only),
]


async def drain(stream: Stream, into: bytearray) -> None:
    while chunk := await stream.receive_some(1 << 20):
        into += chunk


async def transfer(
    send: Stream, receive: Stream, file: BinaryIO, offset: int, count: int | None = None
) -> tuple[int, bytes]:
    """send_file, then send_eof; what it returned and what arrived."""
    received = bytearray()
    result = -1

    async def sender() -> None:
        nonlocal result
        result = await send.send_file(file, offset=offset, count=count)
        await send.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(drain, receive, received)
    return result, bytes(received)


# offset, count, what arrives (as a slice of the data)
RANGES = [
    pytest.param(0, None, slice(0, None), id="all"),
    pytest.param(1, None, slice(1, None), id="from-1"),
    pytest.param(
        12345,
        2 * 1024 * 1024 + 7,
        slice(12345, 12345 + 2 * 1024 * 1024 + 7),
        id="middle",
    ),
    pytest.param(0, SIZE, slice(0, None), id="exactly-all"),
    pytest.param(SIZE - 10, 1000, slice(SIZE - 10, None), id="eof-before-count"),
    pytest.param(SIZE, None, slice(SIZE, None), id="at-eof"),
    pytest.param(SIZE + 5, 10, slice(SIZE, None), id="past-eof"),
    pytest.param(100, 0, slice(0, 0), id="count-0"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("offset", "count", "expected"), RANGES)
async def test_byte_exact(
    kind: str,
    route: str,
    offset: int,
    count: int | None,
    expected: slice,
    data: bytes,
    path: Path,
    tmp_path: Path,
) -> None:
    async with pair(kind, tmp_path) as (send, receive):
        with path.open("rb") as file:
            file.seek(77)  # the position before does not matter
            result, received = await transfer(
                send, receive, file, offset=offset, count=count
            )
            assert received == data[expected]
            assert result == len(received)
            # Moved to offset + sent, as socket.sendfile leaves it.
            assert file.tell() == offset + result


@pytest.mark.parametrize("kind", KINDS)
async def test_unbuffered_and_read_write_files(
    kind: str, route: str, data: bytes, path: Path, tmp_path: Path
) -> None:
    """A raw FileIO, and a file opened for writing whose last bytes are still
    in its buffer (flushed first, so they go out too)."""
    async with pair(kind, tmp_path) as (send, receive):
        with open(path, "rb", buffering=0) as raw:
            result, received = await transfer(send, receive, raw, offset=5)
        assert (result, received) == (SIZE - 5, data[5:])
    async with pair(kind, tmp_path) as (send, receive):
        with open(path, "r+b") as file:
            file.seek(0, io.SEEK_END)
            file.write(b"tail")
            result, received = await transfer(send, receive, file, offset=SIZE - 6)
        assert received == data[-6:] + b"tail"


async def test_tls_copies_byte_exact(data: bytes, path: Path) -> None:
    """tls+tcp:// (a user scheme's trio.SSLStream): the read + send_all loop."""
    ca = trustme.CA()
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_context)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    tls.register(
        "tls-sf+tcp", client_context=client_context, server_context=server_context
    )
    try:
        with trio.fail_after(TIMEOUT):
            await tls_transfer(data, path)
    finally:
        pt.unregister_scheme("tls-sf+tcp")


async def tls_transfer(data: bytes, path: Path) -> None:
    async with await pt.listen("tls-sf+tcp://127.0.0.1:0") as listener:
        received = bytearray()

        async def server() -> None:
            async with await listener.accept() as stream:
                await drain(stream, received)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            async with await pt.connect(listener.url) as client:
                assert isinstance(client, pt.WrappedStream)
                with path.open("rb") as file:
                    sent = await client.send_file(file, offset=1000, count=SIZE - 2000)
                    assert file.tell() == SIZE - 1000
        assert sent == SIZE - 2000
        assert bytes(received) == data[1000:-1000]


def shrink(send: Stream, receive: Stream) -> None:
    """Small socket buffers, so that an unread stream blocks its sender soon."""
    if isinstance(send, pt.SocketStream):
        send.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
    if isinstance(receive, pt.SocketStream):
        receive.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)


@pytest.fixture
def big(tmp_path: Path) -> Iterator[tuple[bytes, Path]]:
    content = os.urandom(BIG)
    file = tmp_path / "big.bin"
    file.write_bytes(content)
    yield content, file


@pytest.mark.parametrize("kind", KINDS)
async def test_slow_reader(
    kind: str, route: str, big: tuple[bytes, Path], tmp_path: Path
) -> None:
    """A reader slower than the sender: send_file waits for room (other
    tasks run meanwhile) and still delivers every byte in order."""
    content, file_path = big
    async with pair(kind, tmp_path) as (send, receive):
        shrink(send, receive)
        received = bytearray()
        finished = trio.Event()
        waited_for_reader = False

        async def sender() -> None:
            with file_path.open("rb") as file:
                assert await send.send_file(file, count=4 * 1024 * 1024) == 4 << 20
            finished.set()
            await send.send_eof()

        async def reader() -> None:
            nonlocal waited_for_reader
            await trio.testing.wait_all_tasks_blocked()
            waited_for_reader = not finished.is_set()  # blocked on us
            while chunk := await receive.receive_some(65536):
                received.extend(chunk)
                await trio.sleep(0.0005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(reader)
        assert waited_for_reader
        assert bytes(received) == content[: 4 << 20]


EXACT_KINDS = [
    "tcp",
    pytest.param("local", marks=posix_only),
    pytest.param(
        "anon",
        marks=pytest.mark.posix_only(
            reason="Windows pipe handles send with read + send_all, whose "
            "cancellation is send_all's (test_cancelled_copy_loop_counts_whole_chunks)"
        ),
    ),
    pytest.param("fifo", marks=posix_only),
]


@pytest.mark.parametrize("kind", EXACT_KINDS)
async def test_cancel_mid_transfer_is_exact_and_resumable(
    kind: str, route: str, big: tuple[bytes, Path], tmp_path: Path
) -> None:
    """Cancelled while waiting for room, send_file leaves the file at exactly
    what the kernel took: the stream still works, and a second send_file
    from ``file.tell()`` completes it byte-exact. No descriptor is left open."""
    content, file_path = big
    before = open_fds()
    async with pair(kind, tmp_path) as (send, receive):
        shrink(send, receive)
        with file_path.open("rb") as file:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:

                    async def sender() -> None:
                        await send.send_file(file, offset=3)
                        pytest.fail("send_file finished without a reader")

                    nursery.start_soon(sender)
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
            assert scope.cancelled_caught
            sent = file.tell() - 3
            assert 0 < sent < BIG - 3
            result, received = await transfer(send, receive, file, offset=file.tell())
            assert result == BIG - 3 - sent
            assert received == content[3:]
    assert open_fds() == before


async def test_cancelled_copy_loop_counts_whole_chunks(
    big: tuple[bytes, Path],
) -> None:
    """The read + send_all loop (a user scheme's stream): cancelled midway,
    the file's position counts the chunks send_all finished, which all
    arrived; the chunk in flight may have arrived in part, as send_all's
    cancellation leaves it."""
    content, file_path = big
    left, right = trio.testing.lockstep_stream_pair()  # send_all waits for reads
    stream = pt.WrappedStream(left, pt.URL.parse("anon://"))
    received = bytearray()
    with trio.fail_after(TIMEOUT), file_path.open("rb") as file:
        async with trio.open_nursery() as nursery:
            sender = trio.CancelScope()

            async def send() -> None:
                with sender:
                    await stream.send_file(file, offset=7)
                    pytest.fail("send_file finished")

            nursery.start_soon(send)
            while len(received) < 2 * _sendfile.CHUNK + 100:
                received += await right.receive_some(100_000)
            sender.cancel()
        sent = file.tell() - 7
    assert sent % _sendfile.CHUNK == 0
    assert 0 < sent <= len(received) < sent + _sendfile.CHUNK
    assert bytes(received) == content[7 : 7 + len(received)]


async def test_checkpoint_per_chunk(
    monkeypatch: pytest.MonkeyPatch, path: Path, tmp_path: Path
) -> None:
    """A peer that always keeps up never makes send_file wait: it still lets
    other tasks run at least once per CHUNK bytes."""
    if not _sendfile.HAVE_SENDFILE:
        pytest.skip("no os.sendfile here: the copy loop's send_all checkpoints")
    ticks = 0
    seen: list[int] = []

    def instant(out_fd: int, in_fd: int, position: int, size: int) -> int:
        seen.append(ticks)  # the kernel "took" it all at once
        return min(size, SIZE - position)

    monkeypatch.setattr(_sendfile, "_sendfile", instant)
    async with pair("tcp", tmp_path) as (send, _receive):

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.lowlevel.checkpoint()
            with path.open("rb") as file:
                assert await send.send_file(file) == SIZE
            nursery.cancel_scope.cancel()
    # One call per CHUNK, then the one that finds the end of the file. The
    # ticker runs once in each of trio's batches, the sender too (in either
    # order): a schedule point per chunk lets it tick between the calls.
    chunks = -(-SIZE // _sendfile.CHUNK)
    assert len(seen) == chunks + 1
    assert seen[chunks - 1] - seen[0] >= chunks - 2 > 0


@pytest.mark.parametrize("kind", KINDS)
async def test_checkpoints_and_errors(
    kind: str, route: str, path: Path, tmp_path: Path
) -> None:
    async with pair(kind, tmp_path) as (send, receive):
        with path.open("rb") as file:
            with trio.testing.assert_checkpoints():
                assert await send.send_file(file, count=0) == 0
            with trio.testing.assert_checkpoints():
                assert await send.send_file(file, count=10) == 10
            for offset, count, error, message in [
                (-1, None, ValueError, "offset must be >= 0"),
                (0, -5, ValueError, "count must be >= 0"),
                (1.5, None, TypeError, "offset must be an int"),
                (0, "10", TypeError, "count must be an int"),
            ]:
                with pytest.raises(error, match=message):
                    await send.send_file(file, offset=offset, count=count)  # type: ignore[arg-type]
        with path.open("r") as text:
            with pytest.raises(TypeError, match="binary mode"):
                await send.send_file(text)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="with a descriptor"):
            await send.send_file(io.BytesIO(b"abc"))
        await send.send_eof()
        with path.open("rb") as file, pytest.raises(trio.ClosedResourceError):
            await send.send_file(file)
        await send.aclose()
        with path.open("rb") as file, pytest.raises(trio.ClosedResourceError):
            await send.send_file(file)
        assert (await receive.receive_some()) == path.read_bytes()[:10]


@posix_only
async def test_not_a_regular_file(tmp_path: Path) -> None:
    """A pipe as the source has no offsets: a clear error naming the URL."""
    async with pair("tcp", tmp_path) as (send, _receive):
        read_end, write_end = os.pipe()
        os.close(write_end)
        with open(read_end, "rb") as pipe:
            with pytest.raises(
                ValueError, match=r"tcp4://127\.0\.0\.1:\d+: .*regular file"
            ):
                await send.send_file(pipe)


async def test_busy_while_sending(big: tuple[bytes, Path], tmp_path: Path) -> None:
    _, file_path = big
    async with pair("tcp", tmp_path) as (send, _receive):
        shrink(send, _receive)
        with file_path.open("rb") as file:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send.send_file, file)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(trio.BusyResourceError):
                    await send.send_all(b"x")
                with pytest.raises(trio.BusyResourceError):
                    await send.send_file(file)
                nursery.cancel_scope.cancel()


async def test_peer_gone_is_broken(big: tuple[bytes, Path], tmp_path: Path) -> None:
    _, file_path = big
    async with pair("tcp", tmp_path) as (send, receive):
        shrink(send, receive)
        await receive.aclose()
        with file_path.open("rb") as file:
            with pytest.raises(trio.BrokenResourceError, match=r"tcp4://"):
                await send.send_file(file)
            assert 0 <= file.tell() < BIG


@pytest.mark.skipif(sys.platform != "win32", reason="Windows pipe handles")
async def test_windows_pipe_copies(data: bytes, path: Path) -> None:  # pragma: no cover
    async with await pt.listen("pipe:///pt-sendfile-test") as listener:
        received = bytearray()

        async def server() -> None:
            async with await listener.accept() as stream:
                await drain(stream, received)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            async with await pt.connect(listener.url) as client:
                with path.open("rb") as file:
                    assert await client.send_file(file, offset=9) == SIZE - 9
                await client.send_eof()
        assert bytes(received) == data[9:]

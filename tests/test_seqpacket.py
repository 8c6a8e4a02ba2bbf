"""local://…?behaviour=seqpacket: channel conformance on both faces, the
byte-stream view (trio's own stream checks), descriptors, the URL rules."""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trio
import trio.testing

import packeteer_trio as pt
import packeteer_trio.schemes._seqpacket as _seqpacket
from packeteer_trio import anyio_compat as pa

from .conftest import open_fds

pytestmark = pytest.mark.linux_only(
    reason="SOCK_SEQPACKET over AF_UNIX is run on Linux (the BSDs have it too)"
)
_names = iter(range(1_000_000))
if sys.platform == "win32":  # pragma: no cover - for mypy; marked Linux-only
    pytest.skip("SOCK_SEQPACKET over AF_UNIX", allow_module_level=True)


def url_in(tmp_path: Path) -> str:
    return f"local://{tmp_path}/sp{next(_names)}.sock?behaviour=seqpacket"


# -- the trio face ------------------------------------------------------------------


@asynccontextmanager
async def trio_pair(
    tmp_path: Path,
) -> AsyncIterator[tuple[pt.SeqpacketChannel, pt.SeqpacketChannel]]:
    async with await pt.listen(url_in(tmp_path)) as listener:
        client = await pt.connect(listener.url)
        server = await listener.accept()
        assert isinstance(client, pt.SeqpacketChannel)
        assert isinstance(server, pt.SeqpacketChannel)
        async with client, server:
            yield client, server


@pytest.mark.trio
async def test_records_keep_their_boundaries(tmp_path: Path) -> None:
    async with trio_pair(tmp_path) as (client, server):
        assert isinstance(client, trio.abc.Channel)
        assert isinstance(client, trio.abc.HalfCloseableStream)
        assert client.socket.type == socket.SOCK_SEQPACKET
        await client.send(value=b"one")
        await client.send(b"two two")
        await client.send(bytearray(100_000))  # one record, bigger than 64 KiB
        with trio.testing.assert_checkpoints():
            assert await server.receive() == b"one"
        assert await server.receive() == b"two two"
        assert await server.receive() == bytes(100_000)
        await server.send(b"back")
        assert await client.receive() == b"back"
        assert server.peer_credentials() == (os.getpid(), os.getuid(), os.getgid())
        assert client.url.query["behaviour"] == "seqpacket"


@pytest.mark.trio
async def test_send_file_goes_as_records_of_at_most_64_kib(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    (tmp_path / "f").write_bytes(data)
    async with trio_pair(tmp_path) as (client, server):
        with open(tmp_path / "f", "rb") as file:
            sent = await client.send_file(file, offset=10, count=150_000)
            assert sent == 150_000
            assert file.tell() == 150_010
        await client.send_eof()
        records = [record async for record in server]
    assert [len(r) for r in records] == [65536, 65536, 150_000 - 2 * 65536]
    assert b"".join(records) == data[10:150_010]


@pytest.mark.trio
async def test_end_of_channel_and_iteration(tmp_path: Path) -> None:
    async with trio_pair(tmp_path) as (client, server):
        for record in (b"a", b"bb", b"ccc"):
            await client.send(record)
        await client.send_eof()
        assert [record async for record in server] == [b"a", b"bb", b"ccc"]
        with pytest.raises(trio.EndOfChannel):
            await server.receive()
        with pytest.raises(trio.ClosedResourceError):
            await client.send(b"after eof")
        # The other direction still works.
        await server.send(b"still here")
        assert await client.receive() == b"still here"
        await server.aclose()
        with pytest.raises(trio.EndOfChannel):
            await client.receive()


@pytest.mark.trio
async def test_too_long_records_and_empty_ones_are_errors(tmp_path: Path) -> None:
    async with trio_pair(tmp_path) as (client, server):
        await client.send(b"0123456789")
        await client.send(b"next")
        with pytest.raises(OSError, match="did not fit") as caught:
            await server.receive(max_size=4)
        assert caught.value.errno == errno.EMSGSIZE
        assert await server.receive(max_size=4) == b"next"  # the channel goes on
        with pytest.raises(ValueError, match="end of file"):
            await client.send(b"")
        big = client.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        assert isinstance(big, int)
        with pytest.raises(OSError) as caught:
            await client.send(bytes(2 * big + 1024))
        assert caught.value.errno == errno.EMSGSIZE


@pytest.mark.trio
async def test_closed_broken_and_busy(tmp_path: Path) -> None:
    async with trio_pair(tmp_path) as (client, server):
        # Two receivers at once.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await server.receive()
            nursery.cancel_scope.cancel()
        # Two senders at once: the first waits for room.
        async with trio.open_nursery() as nursery:

            async def fill() -> None:
                while True:
                    await client.send(bytes(60_000))

            nursery.start_soon(fill)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await client.send(b"x")
            nursery.cancel_scope.cancel()
        # Closing wakes a waiting receiver with ClosedResourceError.
        async with trio_pair(tmp_path) as (a, b):
            async with trio.open_nursery() as nursery:

                async def closes() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    await b.aclose()

                nursery.start_soon(closes)
                with pytest.raises(trio.ClosedResourceError):
                    await b.receive()
            with pytest.raises(trio.ClosedResourceError):
                await b.send(b"x")
            await b.aclose()  # again: fine
            with pytest.raises(trio.BrokenResourceError):
                for _ in range(3):  # the first may still go out
                    await a.send(b"to nobody")


@pytest.mark.trio
async def test_descriptors_travel_with_records(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    async with trio_pair(tmp_path) as (client, server):
        before = open_fds()
        await client.send_fds(b"pipe", [write_fd])
        message, (fd,) = await server.receive_fds(16, 1)
        assert message == b"pipe"
        os.write(fd, b"through")
        os.close(fd)
        assert os.read(read_fd, 16) == b"through"
        await client.send_fds(b"many", [write_fd, write_fd])
        with pytest.raises(pt.DescriptorsDropped):
            await server.receive_fds(16, 1)
        await client.send_fds(b"long record", [write_fd])
        with pytest.raises(OSError, match="did not fit"):
            await server.receive_fds(4, 1)
        assert open_fds() == before
        await client.send_eof()
        with pytest.raises(trio.EndOfChannel):
            await server.receive_fds(16, 1)
    os.close(read_fd)
    os.close(write_fd)


@pytest.mark.trio
async def test_the_stream_view_passes_trios_checks(tmp_path: Path) -> None:
    """connect() promises a Stream: send_all is one record, receive_some hands
    records out in parts."""

    async def maker() -> tuple[pt.SeqpacketChannel, pt.SeqpacketChannel]:
        async with await pt.listen(url_in(tmp_path)) as listener:
            client = await pt.connect(listener.url)
            server = await listener.accept()
        assert isinstance(client, pt.SeqpacketChannel)
        assert isinstance(server, pt.SeqpacketChannel)
        return client, server

    await trio.testing.check_half_closeable_stream(maker, None)


@pytest.mark.trio
async def test_a_listener_on_a_path_and_an_abstract_name(tmp_path: Path) -> None:
    url = url_in(tmp_path)
    listener = await pt.listen(url)
    path = Path(listener.url.path)
    assert path.exists()
    async with listener:
        async with await pt.connect(url) as client, await listener.accept() as server:
            assert isinstance(server, pt.SeqpacketChannel)
            assert isinstance(client, pt.SeqpacketChannel)
            await client.send(b"hi")
            assert await server.receive() == b"hi"
    assert not path.exists()
    async with await pt.listen("local:///%00seqpacket-test?behaviour=seqpacket") as ab:
        async with await pt.connect(ab.url) as client, await ab.accept() as server:
            assert isinstance(server, pt.SeqpacketChannel)
            assert isinstance(client, pt.SeqpacketChannel)
            await server.send(b"abstract")
            assert await client.receive() == b"abstract"
    # A stream client meets a seqpacket listener: refused, like a wrong type.
    async with await pt.listen(url) as listener:
        with pytest.raises(OSError):
            await pt.connect(f"local://{listener.url.path}")


def test_url_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pt.InvalidURL, match="no seqpacket form"):
        pt.URL.parse("local://?behaviour=seqpacket")
    with pytest.raises(pt.InvalidURL, match="seqpacket"):
        pt.URL.parse("tcp://127.0.0.1:1?behaviour=seqpacket")
    monkeypatch.setattr(_seqpacket, "HAS_SEQPACKET", False)  # macOS
    with pytest.raises(pt.UnsupportedScheme, match="behaviour=datagram"):
        pt.URL.parse("local:///tmp/x.sock?behaviour=seqpacket")


@pytest.mark.trio
async def test_datagram_verbs_refuse_seqpacket(tmp_path: Path) -> None:
    with pytest.raises(pt.InvalidURL, match="connect"):
        await pt.open_datagram(url_in(tmp_path))


# -- the anyio face -------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.mark.anyio
async def test_anyio_object_stream_of_records(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    async with await pa.listen(url_in(tmp_path)) as listener:
        client = await pa.connect(listener.url)
        server = await listener.accept()
        assert isinstance(client, pa.SeqpacketStream)
        assert isinstance(server, pa.SeqpacketStream)
        assert isinstance(server, anyio.abc.ObjectStream)
        assert isinstance(server, anyio.abc.ByteStream)
        async with client, server:
            await client.send(item=b"one")
            await client.send(b"two")
            assert await server.receive() == b"one"
            assert await server.receive(max_bytes=3) == b"two"
            await client.send(b"too long")
            with pytest.raises(OSError, match="did not fit"):
                await server.receive(3)
            await client.send_fds(b"fd", [write_fd])
            message, (fd,) = await server.receive_fds(2, 1)
            assert message == b"fd"
            os.close(fd)
            async with anyio.create_task_group() as group:
                group.start_soon(server.receive)
                await anyio.sleep(0.05)
                with pytest.raises(anyio.BusyResourceError):
                    await server.receive()
                group.cancel_scope.cancel()
            await client.send(b"last")
            await client.send_eof()
            assert [record async for record in server] == [b"last"]
            with pytest.raises(anyio.EndOfStream):
                await server.receive()
            assert server.extra(pa.PacketeerAttribute.url) == server.url
            await client.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await client.send(b"x")
    os.close(read_fd)
    os.close(write_fd)

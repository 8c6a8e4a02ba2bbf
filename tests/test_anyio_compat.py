"""The anyio face: every verb on anyio's asyncio and trio backends (and uvloop)."""

from __future__ import annotations

import errno
import functools
import os
import random
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

import packeteer_trio as pt
from packeteer_trio import anyio_compat as pa
from packeteer_trio._anyio._listener import OSListener
from packeteer_trio.anyio_compat import PacketeerAttribute
from packeteer_trio.schemes._listener import SocketListenerEndpoint

from .conftest import ANYIO_BACKENDS, open_fds


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="abstract socket names are Linux-only"
)
posix_only = pytest.mark.posix_only(reason="POSIX-only transport (local://, fifo://)")
# The anyio face has no Windows pipes (HANDLEs on trio's IOCP) yet.
anyio_pipes = pytest.mark.posix_only(
    reason="anon:// on the anyio face is POSIX-only so far (docs/platforms.md)"
)
pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


SA = anyio.abc.SocketAttribute
_counter = iter(range(1_000_000))


def abstract_url() -> str:
    return f"local:///%00pt-anyio-{os.getpid()}-{next(_counter)}"


async def pair(url: str | pt.URL) -> tuple[pa.Stream, pa.Stream]:
    """(client, server) connected through a packeteer listener."""
    async with await pa.listen(url) as listener:
        client = await pa.connect(listener.url)
        server = await listener.accept()
    return client, server


async def receive_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += await stream.receive()
    return data


async def check_round_trip(
    client: anyio.abc.ByteStream, server: anyio.abc.ByteStream
) -> None:
    """Both directions, a payload larger than the socket buffers, half-close."""
    big = os.urandom(1 << 20)
    async with client, server:
        await client.send(b"ping")
        assert await receive_exactly(server, 4) == b"ping"
        await server.send(b"pong")
        assert await receive_exactly(client, 4) == b"pong"

        async with anyio.create_task_group() as group:
            group.start_soon(client.send, big)
            assert await receive_exactly(server, len(big)) == big

        await client.send_eof()
        await client.send_eof()  # idempotent
        with pytest.raises(anyio.EndOfStream):
            await server.receive()
        with pytest.raises(anyio.EndOfStream):  # and it stays at EOF
            await server.receive()
        # Half-closed: the other direction still works.
        await server.send(b"after eof")
        assert await receive_exactly(client, 9) == b"after eof"
        await server.aclose()
        with pytest.raises(anyio.EndOfStream):
            await client.receive()


# --- round trips per scheme --------------------------------------------------


async def test_inproc_round_trip() -> None:
    client, server = await pair("inproc://round-trip")
    assert isinstance(client, pa.InprocStream)
    assert not isinstance(client, anyio.abc.SocketStream)
    assert client.extra(PacketeerAttribute.url) == pt.URL.parse("inproc://round-trip")
    await check_round_trip(client, server)


async def test_tcp4_round_trip() -> None:
    client, server = await pair("tcp4://127.0.0.1:0")
    assert isinstance(client, anyio.abc.SocketStream)
    assert isinstance(server, anyio.abc.SocketStream)
    assert not isinstance(client, anyio.abc.UNIXSocketStream)
    await check_round_trip(client, server)


@needs_ipv6
async def test_tcp6_round_trip() -> None:
    client, server = await pair("tcp6://[::1]:0")
    assert isinstance(client, anyio.abc.SocketStream)
    assert client.extra(SA.family) == socket.AF_INET6
    await check_round_trip(client, server)


async def test_tcp_host_name_round_trip() -> None:
    async with await pa.listen("tcp4://127.0.0.1:0") as listener:
        assert listener.url.port
        client = await pa.connect(f"tcp://localhost:{listener.url.port}")
        server = await listener.accept()
    await check_round_trip(client, server)


@posix_only
async def test_local_path_round_trip(tmp_path: Path) -> None:
    url = f"local://{tmp_path}/s.sock"
    client, server = await pair(url)
    assert isinstance(client, anyio.abc.UNIXSocketStream)
    assert isinstance(server, anyio.abc.UNIXSocketStream)
    await check_round_trip(client, server)
    assert not (tmp_path / "s.sock").exists()  # the listener removed its file


@linux_only
async def test_local_abstract_round_trip() -> None:
    client, server = await pair(abstract_url())
    assert isinstance(client, anyio.abc.UNIXSocketStream)
    await check_round_trip(client, server)


@posix_only
async def test_local_passes_descriptors(tmp_path: Path) -> None:
    client, server = await pair(f"local://{tmp_path}/fds.sock")
    assert isinstance(client, anyio.abc.UNIXSocketStream)
    assert isinstance(server, anyio.abc.UNIXSocketStream)
    read_fd, write_fd = os.pipe()
    async with client, server:
        await client.send_fds(b"x", [write_fd])
        message, fds = await server.receive_fds(1, 1)
        assert message == b"x"
        assert len(fds) == 1
        os.write(fds[0], b"via passed fd")
        assert os.read(read_fd, 100) == b"via passed fd"
        for fd in (read_fd, write_fd, *fds):
            os.close(fd)


@posix_only
async def test_anon_reads_back_what_it_writes() -> None:
    stream = await pa.connect("anon://")
    assert isinstance(stream, anyio.abc.ByteStream)
    assert not isinstance(stream, anyio.abc.SocketStream)
    async with stream:
        await stream.send(b"hello")
        assert await stream.receive() == b"hello"
        await stream.send_eof()
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send(b"more")


@posix_only
async def test_anon_big_payload_through_the_pipe() -> None:
    big = os.urandom(1 << 20)  # far more than a pipe buffer: send must wait
    stream = await pa.connect("anon://")
    async with stream, anyio.create_task_group() as group:
        group.start_soon(stream.send, big)
        assert await receive_exactly(stream, len(big)) == big


@posix_only
async def test_unnamed_local_reads_back() -> None:
    async with await pa.connect("local://") as stream:
        await stream.send(b"ping")
        assert await stream.receive() == b"ping"
        await stream.send_eof()
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()


@posix_only
async def test_fifo_sessions(tmp_path: Path) -> None:
    url = f"fifo://{tmp_path}/f"
    async with await pa.listen(url) as listener:
        assert listener.sockets == []
        reader = await listener.accept()
        # Before any writer came, the reader waits; it does not see EOF.
        with anyio.move_on_after(0.05) as scope:
            await reader.receive()
        assert scope.cancelled_caught
        writer = await pa.connect(url)
        with pytest.raises(anyio.ClosedResourceError, match="no receiving side"):
            await writer.receive()
        await writer.send(b"through the fifo")
        await writer.aclose()
        assert await receive_exactly(reader, 16) == b"through the fifo"
        with pytest.raises(anyio.EndOfStream):
            await reader.receive()
        with pytest.raises(anyio.ClosedResourceError, match="no sending side"):
            await reader.send(b"x")
        await reader.aclose()
        # The next session starts with the next accept.
        second = await listener.accept()
        writer = await pa.connect(url)
        await writer.send(b"again")
        await writer.aclose()
        assert await second.receive() == b"again"
        await second.aclose()
    assert not (tmp_path / "f").exists()


async def test_listener_waits_on_every_socket() -> None:
    # A name may bind several addresses (127.0.0.1 and ::1 for "localhost"):
    # accept then waits on all the sockets. Two loopback ports stand in here.
    socks = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        socks.append(sock)
    url = pt.URL.parse(f"tcp4://127.0.0.1:{socks[0].getsockname()[1]}")
    async with OSListener(SocketListenerEndpoint(socks, url)) as listener:
        assert listener.sockets == socks
        for sock in reversed(socks):
            port = sock.getsockname()[1]
            client = await pa.connect(f"tcp4://127.0.0.1:{port}")
            with anyio.fail_after(5):
                server = await listener.accept()
            async with client, server:
                await client.send(b"hi")
                assert await server.receive() == b"hi"
                assert server.extra(SA.local_port) == port
    assert all(sock.fileno() == -1 for sock in socks)


# --- attributes ---------------------------------------------------------------


async def test_typed_attributes_tcp() -> None:
    async with await pa.listen("tcp4://127.0.0.1:0") as listener:
        port = listener.url.port
        assert listener.url == pt.URL.parse(f"tcp4://127.0.0.1:{port}")
        assert listener.extra(pa.PacketeerAttribute.url) == listener.url
        assert listener.extra(SA.family) == socket.AF_INET
        assert listener.extra(SA.local_address) == ("127.0.0.1", port)
        assert listener.extra(SA.local_port) == port
        assert isinstance(listener.extra(SA.raw_socket), socket.socket)
        client = await pa.connect(listener.url)
        server = await listener.accept()
    async with client, server:
        assert client.extra(pa.PacketeerAttribute.url) == listener.url
        assert client.extra(SA.family) == socket.AF_INET
        assert client.extra(SA.remote_address) == ("127.0.0.1", port)
        assert client.extra(SA.remote_port) == port
        assert client.extra(SA.local_port) == server.extra(SA.remote_port)
        assert server.extra(SA.local_address) == ("127.0.0.1", port)
        raw = client.extra(SA.raw_socket)
        assert isinstance(raw, socket.socket)
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert server.extra(SA.raw_socket).getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )


@posix_only
async def test_typed_attributes_local_and_pipes(tmp_path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - for mypy; never run there
        pytest.skip("POSIX only")
    path = str(tmp_path / "a.sock")
    client, server = await pair(f"local://{path}")
    async with client, server:
        assert client.extra(SA.family) == socket.AF_UNIX
        assert client.extra(SA.remote_address) == path
        assert server.extra(SA.local_address) == path
        with pytest.raises(anyio.TypedAttributeLookupError):
            client.extra(SA.local_port)
        assert client.extra(pa.PacketeerAttribute.url) == pt.URL.parse(
            f"local://{path}"
        )
    async with await pa.connect("anon://") as stream:
        assert stream.extra(pa.PacketeerAttribute.url) == pt.URL.parse("anon://")
        with pytest.raises(anyio.TypedAttributeLookupError):
            stream.extra(SA.raw_socket)


# --- serve --------------------------------------------------------------------


async def echo_once(stream: anyio.abc.ByteStream) -> None:
    async with stream:
        async for chunk in stream:
            await stream.send(chunk)


@pytest.mark.parametrize(
    "kind", ["tcp", pytest.param("local", marks=posix_only), "inproc"]
)
async def test_serve_with_a_task_group(kind: str, tmp_path: Path) -> None:
    url = {
        "tcp": "tcp://127.0.0.1:0",
        "local": f"local://{tmp_path}/e.sock",
        "inproc": "inproc://served",
    }[kind]
    async with (
        anyio.create_task_group() as handlers,
        anyio.create_task_group() as group,
    ):
        serve = functools.partial(pa.serve, task_group=handlers)
        listeners = await group.start(serve, url, echo_once)
        assert len(listeners) == 1
        (listener,) = listeners
        assert isinstance(
            listener, pa.InprocListener if kind == "inproc" else pa.Listener
        )
        for index in range(3):
            async with await pa.connect(listener.url) as client:
                message = f"hello {index}".encode()
                await client.send(message)
                assert await receive_exactly(client, len(message)) == message
        group.cancel_scope.cancel()
    with pytest.raises(anyio.ClosedResourceError):
        await listener.accept()


async def test_listener_serve_method() -> None:
    listener = await pa.listen("tcp://127.0.0.1:0")
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, echo_once)
        async with await pa.connect(listener.url) as client:
            await client.send(b"echo me")
            assert await receive_exactly(client, 7) == b"echo me"
        group.cancel_scope.cancel()
    await listener.aclose()


# --- anyio's own sockets on either side ---------------------------------------


async def test_anyio_tcp_client_to_packeteer_listener() -> None:
    async with await pa.listen("tcp4://127.0.0.1:0") as listener:
        assert listener.url.port
        client = await anyio.connect_tcp("127.0.0.1", listener.url.port)
        server = await listener.accept()
    await check_round_trip(client, server)


@posix_only
async def test_anyio_unix_client_to_packeteer_listener(tmp_path: Path) -> None:
    path = tmp_path / "p.sock"
    async with await pa.listen(f"local://{path}") as listener:
        client = await anyio.connect_unix(path)
        server = await listener.accept()
    await check_round_trip(client, server)


async def test_packeteer_client_to_anyio_tcp_listener() -> None:
    async with await anyio.create_tcp_listener(
        local_host="127.0.0.1", local_port=0
    ) as multi:
        (listener,) = multi.listeners
        assert isinstance(listener, anyio.abc.SocketListener)
        port = listener.extra(SA.local_port)
        client = await pa.connect(f"tcp4://127.0.0.1:{port}")
        server = await listener.accept()
    await check_round_trip(client, server)


@posix_only
async def test_packeteer_client_to_anyio_unix_listener(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"
    async with await anyio.create_unix_listener(path) as listener:
        client = await pa.connect(f"local://{path}")
        server = await listener.accept()
    await check_round_trip(client, server)


async def test_url_connectable() -> None:
    async with await pa.listen("tcp4://127.0.0.1:0") as listener:
        connectable = pa.URLConnectable(str(listener.url))
        assert isinstance(connectable, anyio.abc.ByteStreamConnectable)
        assert connectable.url == listener.url
        assert connectable == pa.URLConnectable(listener.url)
        async with await connectable.connect() as client:
            server = await listener.accept()
            async with server:
                await client.send(b"via connectable")
                assert await receive_exactly(server, 15) == b"via connectable"
        port = listener.url.port
    with pytest.raises(anyio.ConnectionFailed, match=f"127.0.0.1:{port}") as info:
        await pa.URLConnectable(f"tcp4://127.0.0.1:{port}").connect()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    with pytest.raises(pt.InvalidURL):
        pa.URLConnectable("udp://127.0.0.1:5")


# --- errors -------------------------------------------------------------------


async def test_connect_errors_name_the_url(tmp_path: Path) -> None:
    async with await pa.listen("tcp4://127.0.0.1:0") as listener:
        port = listener.url.port
    with pytest.raises(ConnectionRefusedError, match=f"tcp4://127.0.0.1:{port}"):
        await pa.connect(f"tcp4://127.0.0.1:{port}")
    with pytest.raises(pt.InvalidURL, match="connect_datagram"):
        await pa.connect("udp://127.0.0.1:5")
    with pytest.raises(pt.InvalidURL, match="not a URL"):
        await pa.connect("nonsense")


@posix_only
async def test_local_connect_errors_name_the_url(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sock"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        await pa.connect(f"local://{missing}")
    with pytest.raises(pt.InvalidURL, match="open_datagram"):
        await pa.listen("local:///tmp/x?behaviour=datagram")
    with pytest.raises(pt.InvalidURL, match="unnamed"):
        await pa.listen("local://")


@pytest.mark.parametrize("url", ["tcp4://127.0.0.1:0", "inproc://busy"])
async def test_busy_resource(url: str) -> None:
    client, server = await pair(url)
    listener = await pa.listen(url.replace("busy", "busy-listener"))
    async with client, server, listener:
        for call in (server.receive, listener.accept):
            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(anyio.BusyResourceError):
                    await call()
                group.cancel_scope.cancel()


@anyio_pipes
async def test_busy_pipe() -> None:
    async with await pa.connect("anon://") as anon:
        async with anyio.create_task_group() as group:
            group.start_soon(anon.receive)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await anon.receive()
            group.cancel_scope.cancel()


@pytest.mark.parametrize(
    "kind",
    [
        "tcp",
        pytest.param("local", marks=posix_only),
        pytest.param("anon", marks=anyio_pipes),
        "inproc",
    ],
)
async def test_closed_resource(kind: str, tmp_path: Path) -> None:
    if kind == "anon":
        stream = await pa.connect("anon://")
        other: anyio.abc.ByteStream | None = None
    else:
        url = {
            "tcp": "tcp://127.0.0.1:0",
            "local": f"local://{tmp_path}/c.sock",
            "inproc": "inproc://closing",
        }[kind]
        stream, other = await pair(url)
    # Closing wakes a task blocked in receive with ClosedResourceError.
    async with anyio.create_task_group() as group:

        async def blocked_receive() -> None:
            with pytest.raises(anyio.ClosedResourceError):
                await stream.receive()

        group.start_soon(blocked_receive)
        await anyio.wait_all_tasks_blocked()
        await stream.aclose()
    await stream.aclose()  # idempotent
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send(b"x")
    if other is not None:
        await other.aclose()
    listener = await pa.listen("tcp4://127.0.0.1:0")
    async with anyio.create_task_group() as group:

        async def blocked_accept() -> None:
            with pytest.raises(anyio.ClosedResourceError):
                await listener.accept()

        group.start_soon(blocked_accept)
        await anyio.wait_all_tasks_blocked()
        await listener.aclose()


# --- cancellation -------------------------------------------------------------


@pytest.fixture
async def tcp_listener() -> AsyncIterator[pa.Listener]:
    async with await pa.listen("tcp4://127.0.0.1:0", backlog=1024) as listener:
        assert isinstance(listener, pa.Listener)
        yield listener


@pytest.mark.parametrize("kinds", ["tcp", pytest.param("tcp+local", marks=posix_only)])
async def test_cancelled_connects_leak_no_fd(tmp_path: Path, kinds: str) -> None:
    rng = random.Random(5)
    listeners = [await pa.listen("tcp4://127.0.0.1:0", backlog=1024)]
    if kinds == "tcp+local":
        listeners.append(await pa.listen(f"local://{tmp_path}/c.sock", backlog=1024))
    urls = [listener.url for listener in listeners]
    for url in urls:  # warm up: the event loop may open descriptors on first use
        await (await pa.connect(url)).aclose()
    before = open_fds()
    for index in range(300):
        url = urls[index % len(urls)]
        with anyio.CancelScope() as scope:
            if index % 3 == 0:
                scope.cancel()  # before anything happened
            else:  # somewhere in the middle, or after it succeeded
                scope.deadline = anyio.current_time() + rng.random() * 0.0005
            stream = await pa.connect(url)
            await stream.aclose()
    for listener in listeners:
        await listener.aclose()
    assert open_fds() == before - len(listeners)


@posix_only
async def test_every_verb_is_a_checkpoint(tmp_path: Path) -> None:
    async with await pa.listen(f"fifo://{tmp_path}/f") as fifo:
        before = open_fds()
        for url in ("anon://", "local://", fifo.url):
            for _ in range(50):
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await pa.connect(url)
                    pytest.fail("connect was not a checkpoint")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pa.listen(f"local://{tmp_path}/never.sock")
        for verb in (pa.open_datagram, pa.connect_datagram):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await verb("local://?behaviour=datagram")
        assert open_fds() == before
    assert list(tmp_path.iterdir()) == []


async def test_cancelled_receives_and_accepts_lose_nothing(
    tcp_listener: pa.Listener,
) -> None:
    client = await pa.connect(tcp_listener.url)
    server = await tcp_listener.accept()
    before = open_fds()
    async with client, server:
        for index in range(200):
            with anyio.move_on_after(0 if index % 2 else 0.0002):
                await server.receive()
            with anyio.move_on_after(0 if index % 2 else 0.0002):
                await tcp_listener.accept()
        assert open_fds() == before
        # The stream still works and no byte went missing.
        payload = bytes(range(256)) * 64
        async with anyio.create_task_group() as group:
            group.start_soon(client.send, payload)
            received = b""
            while len(received) < len(payload):
                with anyio.move_on_after(0.0001):
                    received += await server.receive(1000)
            assert received == payload


# --- datagrams ----------------------------------------------------------------


def datagram_url(kind: str, tmp_path: Path, n: int) -> str:
    if kind == "udp4":
        return "udp4://127.0.0.1:0"
    if kind == "udp6":
        return "udp6://[::1]:0"
    if kind == "local_path":
        return f"local://{tmp_path}/dgram-{n}.sock?behaviour=datagram"
    return abstract_url() + "?behaviour=datagram"


DATAGRAM_KINDS = [
    pytest.param("udp4"),
    pytest.param("udp6", marks=needs_ipv6),
    pytest.param("local_path", marks=posix_only),
    pytest.param("local_abstract", marks=linux_only),
]


@pytest.mark.parametrize("kind", DATAGRAM_KINDS)
async def test_datagram_round_trip(kind: str, tmp_path: Path) -> None:
    server = await pa.open_datagram(datagram_url(kind, tmp_path, 1))
    client = await pa.open_datagram(datagram_url(kind, tmp_path, 2))
    async with server, client:
        assert isinstance(server, anyio.abc.UnreliableObjectStream)
        await client.send((b"hello", server.url))
        with anyio.fail_after(5):
            data, sender = await server.receive()
        assert (data, sender) == (b"hello", client.url)
        await server.send((data.upper(), sender))  # the sender is an address
        assert await client.receive() == (b"HELLO", server.url)
        # Addresses as text work too, and so do empty datagrams.
        await client.send_to(b"", str(server.url))
        assert await server.receive_from() == (b"", client.url)


@pytest.mark.parametrize("kind", DATAGRAM_KINDS)
async def test_datagram_channel_round_trip(kind: str, tmp_path: Path) -> None:
    async with await pa.open_datagram(datagram_url(kind, tmp_path, 1)) as server:
        local = datagram_url(kind, tmp_path, 2) if kind.startswith("local") else None
        channel = await pa.connect_datagram(server.url, local=local)
        async with channel:
            assert isinstance(channel, anyio.abc.UnreliableObjectStream)
            assert channel.url == server.url
            for n in range(10):
                await channel.send(b"ping %d" % n)
                with anyio.fail_after(5):
                    data, sender = await server.receive()
                assert data == b"ping %d" % n
                await server.send((b"pong %d" % n, sender))
                with anyio.fail_after(5):
                    assert await channel.receive() == b"pong %d" % n


@posix_only
async def test_datagram_unnamed_pair_reads_back() -> None:
    async with await pa.open_datagram("local://?behaviour=datagram") as pair:
        await pair.send((b"one", pair.url))
        data, sender = await pair.receive()
        assert (data, sender) == (b"one", pair.url)
        await pair.send((b"two", sender))
        assert await pair.receive() == (b"two", pair.url)
        with pytest.raises(pt.InvalidURL, match="only to itself"):
            await pair.send((b"x", "local:///tmp/elsewhere"))
    async with await pa.connect_datagram("local://?behaviour=datagram") as channel:
        await channel.send(b"loop")
        assert await channel.receive() == b"loop"


async def test_datagram_typed_attributes() -> None:
    async with await pa.open_datagram("udp4://127.0.0.1:0") as server:
        port = server.url.port
        assert server.extra(pa.PacketeerAttribute.url) == server.url
        assert server.extra(SA.family) == socket.AF_INET
        assert server.extra(SA.local_address) == ("127.0.0.1", port)
        assert server.extra(SA.local_port) == port
        assert isinstance(server.extra(SA.raw_socket), socket.socket)
        with pytest.raises(anyio.TypedAttributeLookupError):
            server.extra(SA.remote_address)
        async with await pa.connect_datagram(server.url) as channel:
            assert channel.extra(SA.remote_address) == ("127.0.0.1", port)
            assert channel.extra(SA.remote_port) == port
            assert channel.extra(pa.PacketeerAttribute.url) == server.url
            await channel.send(b"x")
            _, sender = await server.receive()
            assert sender.port == channel.extra(SA.local_port)


async def test_datagram_size_errors() -> None:
    async with (
        await pa.open_datagram("udp4://127.0.0.1:0") as a,
        await pa.open_datagram("udp4://127.0.0.1:0") as b,
    ):
        await a.send((b"x" * 1000, b.url))
        await a.send((b"fits", b.url))
        with pytest.raises(OSError, match="max_size=100") as info:
            await b.receive(max_size=100)
        assert info.value.errno == errno.EMSGSIZE
        assert await b.receive(max_size=100) == (b"fits", a.url)
        with pytest.raises(OSError, match="70000 bytes") as info:
            await a.send((b"x" * 70000, b.url))
        assert info.value.errno == errno.EMSGSIZE
        async with await pa.connect_datagram(b.url) as channel:
            await channel.send(b"?")
            _, sender = await b.receive()
            await b.send((b"q" * 300, sender))
            with anyio.fail_after(5), pytest.raises(OSError, match="max_size=10"):
                await channel.receive(max_size=10)


async def test_datagram_errors() -> None:
    with pytest.raises(pt.InvalidURL, match=r"connect\(\) or listen\(\)"):
        await pa.open_datagram("tcp://127.0.0.1:0")
    async with await pa.open_datagram("udp4://127.0.0.1:0") as sock:
        with pytest.raises(pt.InvalidURL, match="IPv6"):
            await sock.send((b"x", "udp6://[::1]:5"))
        with pytest.raises(pt.InvalidURL):
            await sock.send((b"x", "not a url"))


@posix_only
async def test_local_datagram_errors() -> None:
    with pytest.raises(pt.InvalidURL, match="behaviour=datagram"):
        await pa.connect_datagram("local:///tmp/x.sock")


@pytest.mark.wine_differs(
    reason="Wine 8 keeps the ICMP port-unreachable error in SO_ERROR: recv() "
    "says WSAEWOULDBLOCK and the socket never polls readable (Windows: "
    "WSAECONNRESET from recv())"
)
async def test_datagram_peer_gone_is_refused() -> None:
    async with await pa.open_datagram("udp4://127.0.0.1:0") as gone:
        url = gone.url
    # Nobody at the peer: ICMP says so on a later call; the channel stays usable.
    async with await pa.connect_datagram(url) as channel:
        with pytest.raises(ConnectionRefusedError, match=str(url)):
            await channel.send(b"anyone?")
            with anyio.fail_after(5):
                await channel.receive()
        async with anyio.create_task_group() as group:
            group.start_soon(channel.receive)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await channel.receive()
            group.cancel_scope.cancel()


@pytest.mark.parametrize("connected", [False, True])
async def test_datagram_closed_resource(connected: bool) -> None:
    sock: anyio.abc.UnreliableObjectStream[Any]
    server = await pa.open_datagram("udp4://127.0.0.1:0")
    if connected:
        sock = await pa.connect_datagram(server.url)
    else:
        sock = await pa.open_datagram("udp4://127.0.0.1:0")
    async with anyio.create_task_group() as group:

        async def blocked_receive() -> None:
            with pytest.raises(anyio.ClosedResourceError):
                await sock.receive()

        group.start_soon(blocked_receive)
        await anyio.wait_all_tasks_blocked()
        await sock.aclose()
    await sock.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await sock.receive()
    with pytest.raises(anyio.ClosedResourceError):
        item: Any = b"x" if connected else (b"x", server.url)
        await sock.send(item)
    await server.aclose()


@pytest.mark.parametrize("kind", ["udp4", pytest.param("local_path", marks=posix_only)])
async def test_datagram_cancellation_loses_nothing_and_leaks_nothing(
    tmp_path: Path, kind: str
) -> None:
    async with await pa.open_datagram(datagram_url(kind, tmp_path, -1)):
        pass  # lazily made resources exist
    before = open_fds()
    for n in range(100):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pa.open_datagram("udp4://127.0.0.1:0")
        async with await pa.open_datagram(datagram_url(kind, tmp_path, n)):
            pass
    assert open_fds() == before
    assert list(tmp_path.iterdir()) == []
    async with (
        await pa.open_datagram("udp4://127.0.0.1:0") as a,
        await pa.open_datagram("udp4://127.0.0.1:0") as b,
    ):
        for n in range(100):
            await a.send((b"%d" % n, b.url))
            if n % 10 == 0:
                await anyio.sleep(0.001)  # let some arrive before the receiver
        received: list[int] = []
        attempts = 0
        with anyio.fail_after(10):
            while len(received) < 100:
                attempts += 1
                with anyio.move_on_after(0 if attempts % 2 else 0.0001):
                    data, _ = await b.receive()
                    received.append(int(data))
        assert received == list(range(100))

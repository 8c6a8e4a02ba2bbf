"""Stream connectors: trio's own conformance checks, per scheme."""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

import packeteer_trio as pt
from packeteer_trio import PipeStream, SocketStream, Stream

from .conftest import linux_only, needs_ipv6, posix_only

StreamPair = tuple[Stream, Stream]


async def socket_pair(url: str) -> StreamPair:
    listener = await pt.listen(url)
    try:
        client = await pt.connect(listener.url)
        server = await listener.accept()
    finally:
        await listener.aclose()
    return client, server


async def fill(stream: Stream) -> None:
    """Send from *stream* until the kernel buffers towards its peer are full."""

    async def sender() -> None:
        while True:
            await stream.send_all(b"x" * 10000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


def makers(
    url_of: Callable[[], str],
) -> tuple[Callable[[], Awaitable[StreamPair]], Callable[[], Awaitable[StreamPair]]]:
    async def maker() -> StreamPair:
        return await socket_pair(url_of())

    async def clogged() -> StreamPair:
        left, right = await maker()
        await fill(left)
        await fill(right)
        return left, right

    return maker, clogged


# trio's checks with a clogged stream need a socket that stays unwritable
# while its peer reads nothing.
CLOGGING = [
    pytest.param(False, id="free"),
    pytest.param(
        True,
        id="clogged",
        marks=pytest.mark.wine_differs(
            reason="Wine 8 reports a full TCP socket writable again while its "
            "peer reads nothing (the Linux socket underneath keeps growing its "
            "buffers); trio's own check_half_closeable_stream on its "
            "SocketStream fails the same way under Wine"
        ),
    ),
]


@pytest.mark.trio
@pytest.mark.parametrize("clogging", CLOGGING)
async def test_tcp4_half_closeable(clogging: bool) -> None:
    maker, clogged = makers(lambda: "tcp4://127.0.0.1:0")
    await trio.testing.check_half_closeable_stream(maker, clogged if clogging else None)


@needs_ipv6
@pytest.mark.trio
@pytest.mark.parametrize("clogging", CLOGGING)
async def test_tcp6_half_closeable(clogging: bool) -> None:
    maker, clogged = makers(lambda: "tcp6://[::1]:0")
    await trio.testing.check_half_closeable_stream(maker, clogged if clogging else None)


@posix_only
@pytest.mark.trio
async def test_local_path_half_closeable(tmp_path: Path) -> None:
    counter = iter(range(1000))
    maker, clogged = makers(lambda: f"local://{tmp_path}/s{next(counter)}.sock")
    await trio.testing.check_half_closeable_stream(maker, clogged)


@pytest.mark.trio
@pytest.mark.parametrize("clogging", [False, True], ids=["free", "clogged"])
async def test_inproc_half_closeable(clogging: bool) -> None:
    counter = iter(range(1000))
    maker, clogged = makers(lambda: f"inproc://conformance-{next(counter)}")
    await trio.testing.check_half_closeable_stream(maker, clogged if clogging else None)


# Where the test is about the API, not the transport: a user swapping tcp://
# for inproc:// in their tests sees the same behaviour.
SWAPPABLE = ["tcp4://127.0.0.1:0", "inproc://swapped"]


@linux_only
@pytest.mark.trio
async def test_local_abstract_half_closeable() -> None:
    counter = iter(range(1000))
    tag = os.getpid()
    maker, clogged = makers(lambda: f"local:///%00pt-test-{tag}-{next(counter)}")
    await trio.testing.check_half_closeable_stream(maker, clogged)


def split(stream: Stream) -> StreamPair:
    """An anon:// stream's (send, receive) halves."""
    if sys.platform == "win32":
        from packeteer_trio._trio._stream_windows import HandleStream

        assert isinstance(stream, HandleStream)
    else:
        assert isinstance(stream, PipeStream)
    return stream.split()


@pytest.mark.trio
@pytest.mark.parametrize(
    "clogging",
    [
        pytest.param(False, id="free"),
        pytest.param(
            True,
            id="clogged",
            marks=pytest.mark.posix_only(
                reason="a Windows pipe has no 'writable' signal: "
                "wait_send_all_might_not_block only checkpoints, as in trio's "
                "own Windows pipes (which trio checks unclogged too)"
            ),
        ),
    ],
)
async def test_anon_one_way(clogging: bool) -> None:
    async def maker() -> StreamPair:
        return split(await pt.connect("anon://"))

    async def clogged() -> StreamPair:
        send, receive = await maker()
        await fill(send)
        return send, receive

    await trio.testing.check_one_way_stream(maker, clogged if clogging else None)


@pytest.mark.trio
async def test_anon_reads_back_what_it_writes() -> None:
    async with await pt.connect("anon://") as stream:
        await stream.send_all(b"hello")
        assert await stream.receive_some() == b"hello"
        await stream.send_eof()
        assert await stream.receive_some() == b""
        with pytest.raises(trio.ClosedResourceError):
            await stream.send_all(b"more")


@posix_only
@pytest.mark.trio
async def test_unnamed_local_reads_back() -> None:
    async with await pt.connect("local://") as stream:
        await stream.send_all(b"ping")
        assert await stream.receive_some() == b"ping"


@posix_only
@pytest.mark.trio
async def test_fifo_one_way(tmp_path: Path) -> None:
    listeners: list[pt.Listener] = []
    counter = iter(range(1000))

    async def maker() -> StreamPair:
        listener = await pt.listen(f"fifo://{tmp_path}/f{next(counter)}")
        listeners.append(listener)
        send = await pt.connect(listener.url)
        receive = await listener.accept()
        return send, receive

    async def clogged() -> StreamPair:
        send, receive = await maker()
        await fill(send)
        return send, receive

    try:
        await trio.testing.check_one_way_stream(maker, clogged)
    finally:
        for listener in listeners:
            await listener.aclose()
    assert list(tmp_path.iterdir()) == []


@posix_only
@pytest.mark.trio
async def test_fifo_sessions_and_shared_medium(tmp_path: Path) -> None:
    url = f"fifo://{tmp_path}/f"
    async with await pt.listen(url) as listener:
        assert stat.S_ISFIFO(os.stat(tmp_path / "f").st_mode)
        # Accepting before any writer: the reader waits, it does not see EOF.
        reader = await listener.accept()
        with trio.move_on_after(0.05) as scope:
            await reader.receive_some()
        assert scope.cancelled_caught
        one, two = await pt.connect(url), await pt.connect(url)
        await one.send_all(b"a")
        await two.send_all(b"b")
        await one.aclose()
        await two.aclose()
        got = b""
        while chunk := await reader.receive_some():
            got += chunk
        assert sorted(got) == sorted(b"ab")
        # The writer end only sends; the reader end only receives.
        with pytest.raises(trio.ClosedResourceError, match="no sending side"):
            await reader.send_all(b"x")
        await reader.aclose()
        # Between sessions, with nobody accepting, writers are refused.
        with pytest.raises(ConnectionRefusedError):
            await pt.connect(url)
        # A second session starts with the next accept.
        second = await listener.accept()
        writer = await pt.connect(url)
        with pytest.raises(trio.ClosedResourceError, match="no receiving side"):
            await writer.receive_some()
        await writer.send_all(b"again")
        await writer.aclose()
        assert await second.receive_some() == b"again"
        assert await second.receive_some() == b""
        await second.aclose()
    assert not (tmp_path / "f").exists()


@posix_only
@pytest.mark.trio
async def test_fifo_errors(tmp_path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - for mypy; never run there
        pytest.skip("POSIX only")
    regular = tmp_path / "file"
    regular.write_text("keep me")
    with pytest.raises(FileExistsError, match="not a FIFO"):
        await pt.listen(f"fifo://{regular}")
    assert regular.read_text() == "keep me"
    with pytest.raises(FileNotFoundError, match=f"fifo://{tmp_path}/missing"):
        await pt.connect(f"fifo://{tmp_path}/missing")
    os.mkfifo(tmp_path / "lonely")
    with pytest.raises(ConnectionRefusedError, match="no reader"):
        await pt.connect(f"fifo://{tmp_path}/lonely")
    # An existing FIFO is fine to listen on, and is not ours to remove.
    async with await pt.listen(f"fifo://{tmp_path}/lonely"):
        pass
    assert (tmp_path / "lonely").exists()


@pytest.mark.trio
async def test_listener_url_has_real_port() -> None:
    async with await pt.listen("tcp://127.0.0.1:0") as listener:
        assert listener.url.scheme == "tcp4"
        assert listener.url.port not in (None, 0)
        async with await pt.connect(listener.url) as client:
            async with await listener.accept() as server:
                assert client.url == listener.url
                assert server.local_address == listener.url
                assert client.peer_address == listener.url
                assert server.peer_address == client.local_address
                assert isinstance(client, SocketStream)
                assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                await client.send_all(b"x")
                buffer = bytearray(10)
                assert await server.receive_into(buffer) == 1
                assert buffer[:1] == b"x"


@pytest.mark.trio
async def test_tcp_host_name_connects() -> None:
    async with await pt.listen("tcp4://127.0.0.1:0") as listener:
        port = listener.url.port
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.accept)
            async with await pt.connect(f"tcp://localhost:{port}") as stream:
                assert stream.url == pt.URL.parse(f"tcp4://127.0.0.1:{port}")


@pytest.mark.trio
async def test_tcp_wildcard_listens_on_every_family() -> None:
    async with await pt.listen("tcp://:0") as listener:
        families = {sock.family for sock in listener.sockets}
        assert socket.AF_INET in families
        ports = {sock.getsockname()[1] for sock in listener.sockets}
        assert len(ports) == 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.accept)
            port = listener.url.port
            async with await pt.connect(f"tcp4://127.0.0.1:{port}"):
                pass


@pytest.mark.trio
async def test_refused_names_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"tcp4://127.0.0.1:{port}"
    with pytest.raises(ConnectionRefusedError, match=url):
        await pt.connect(url)


@pytest.mark.trio
async def test_address_in_use() -> None:
    import errno

    async with await pt.listen("tcp4://127.0.0.1:0") as listener:
        with pytest.raises(OSError, match=str(listener.url)) as info:
            await pt.listen(listener.url)
        assert info.value.errno == errno.EADDRINUSE


@pytest.mark.trio
async def test_datagram_or_bad_urls_are_refused_clearly() -> None:
    with pytest.raises(pt.InvalidURL, match="connect_datagram"):
        await pt.connect("udp4://127.0.0.1:9")
    with pytest.raises(pt.InvalidURL, match="connect\\("):
        await pt.listen("anon://")
    with pytest.raises(pt.InvalidURL, match="port"):
        await pt.connect("tcp://127.0.0.1")


@posix_only
@pytest.mark.trio
async def test_local_datagram_or_unnamed_urls_are_refused_clearly() -> None:
    with pytest.raises(pt.InvalidURL, match="connect_datagram"):
        await pt.connect("local:///tmp/x?behaviour=datagram")
    with pytest.raises(pt.InvalidURL, match="unnamed"):
        await pt.listen("local://")


@posix_only
@pytest.mark.trio
async def test_local_listener_owns_its_file(tmp_path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - for mypy; never run there
        pytest.skip("POSIX only")
    path = tmp_path / "s.sock"
    regular = tmp_path / "regular"
    regular.write_text("precious")
    with pytest.raises(FileExistsError, match="refusing"):
        await pt.listen(f"local://{regular}")
    assert regular.read_text() == "precious"
    # A stale socket file (its server died without cleaning up) is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    listener = await pt.listen(f"local://{path}?mode=0600")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    async with await pt.connect(f"local://{path}") as client:
        async with await listener.accept() as server:
            assert isinstance(server, SocketStream)
            pid, uid, gid = server.peer_credentials()
            assert (pid, uid, gid) == (os.getpid(), os.getuid(), os.getgid())
            await client.send_all(b"hi")
            assert await server.receive_some() == b"hi"
    # A live one is not replaced (its server sees one empty probe connection).
    with pytest.raises(OSError, match="running server"):
        await pt.listen(f"local://{path}")
    await listener.aclose()
    assert not path.exists()


@linux_only
@pytest.mark.trio
async def test_abstract_leaves_nothing_on_disk(tmp_path: Path) -> None:
    before = set(os.listdir("."))
    async with await pt.listen(f"local:///%00pt-abstract-{os.getpid()}") as listener:
        assert listener.url.path.startswith("/\0")
        async with await pt.connect(listener.url):
            pass
    assert set(os.listdir(".")) == before


@pytest.mark.trio
@pytest.mark.parametrize("url", SWAPPABLE)
async def test_serve_many_clients(url: str) -> None:
    async def echo(stream: Stream) -> None:
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(pt.serve, url, echo)
        url = listeners[0].url

        async def client(index: int) -> None:
            async with await pt.connect(url) as stream:
                for _ in range(10):
                    await stream.send_all(b"%d" % index)
                    assert await stream.receive_some() == b"%d" % index

        async with trio.open_nursery() as clients:
            for index in range(20):
                clients.start_soon(client, index)
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_serve_handler_error_propagates_like_trio() -> None:
    async def broken(stream: Stream) -> None:
        raise RuntimeError("handler failed")

    with pytest.RaisesGroup(RuntimeError, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(pt.serve, "tcp4://127.0.0.1:0", broken)
            async with await pt.connect(listeners[0].url) as stream:
                await stream.receive_some()
                await trio.sleep_forever()


async def _random_cancel_cycle(url: str, listener: pt.Listener, delay: float) -> None:
    with trio.move_on_after(delay):
        async with trio.open_nursery() as nursery:

            async def server() -> None:
                async with await listener.accept() as stream:
                    await stream.receive_some()

            nursery.start_soon(server)
            async with await pt.connect(url) as client:
                await client.send_all(b"x" * 100)
                await client.receive_some()


@pytest.mark.trio
@pytest.mark.parametrize("scheme", ["tcp", pytest.param("local", marks=posix_only)])
async def test_cancellation_never_leaks_fds(scheme: str, tmp_path: Path) -> None:
    import random

    from .conftest import open_fds

    rng = random.Random(1234)
    url = "tcp4://127.0.0.1:0" if scheme == "tcp" else f"local://{tmp_path}/c.sock"
    async with await pt.listen(url) as listener:  # lazily made resources exist
        await _random_cancel_cycle(str(listener.url), listener, 1)
    before = open_fds()
    async with await pt.listen(url) as listener:
        for _ in range(1000):
            await _random_cancel_cycle(
                str(listener.url), listener, rng.choice([0, 0.00001, 0.0001, 0.001])
            )
    assert open_fds() == before


@pytest.mark.trio
async def test_anon_cancellation_never_leaks_fds() -> None:
    from .conftest import open_fds

    before = open_fds()
    for index in range(300):
        with trio.move_on_after(0.0001 * (index % 5)):
            async with await pt.connect("anon://") as stream:
                await stream.send_all(b"x")
                await stream.receive_some()
                await stream.receive_some()
    assert open_fds() == before


@posix_only
@pytest.mark.trio
async def test_fifo_cancellation_never_leaks_fds(tmp_path: Path) -> None:
    from .conftest import open_fds

    before = open_fds()
    async with await pt.listen(f"fifo://{tmp_path}/ff") as listener:
        for index in range(300):
            with trio.move_on_after(0.0001 * (index % 5)):
                async with await listener.accept() as reader:
                    async with await pt.connect(listener.url) as writer:
                        await writer.send_all(b"y")
                        await reader.receive_some()
                        await reader.receive_some()
    assert open_fds() == before


@pytest.mark.trio
@pytest.mark.parametrize("url", SWAPPABLE)
async def test_busy_and_closed(url: str) -> None:
    client, server = await socket_pair(url)
    async with client, server:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.receive_some)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await server.receive_some()
            await client.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"x")


@pytest.mark.trio
@pytest.mark.parametrize("url", SWAPPABLE)
async def test_close_wakes_waiting_receiver(url: str) -> None:
    client, server = await socket_pair(url)
    async with client:
        async with trio.open_nursery() as nursery:

            async def waiter() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await server.receive_some()

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            await server.aclose()


@pytest.mark.trio
@pytest.mark.parametrize("url", SWAPPABLE)
async def test_accept_close_wakes_waiter(url: str) -> None:
    listener = await pt.listen(url)
    async with trio.open_nursery() as nursery:

        async def waiter() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await listener.accept()

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        await listener.aclose()


@posix_only
@pytest.mark.trio
async def test_connect_and_listen_are_checkpoints(tmp_path: Path) -> None:
    for url in ("anon://", "local://"):
        with trio.testing.assert_checkpoints():
            stream = await pt.connect(url)
        await stream.aclose()
        with trio.CancelScope() as scope:
            scope.cancel()
            await pt.connect(url)
        assert scope.cancelled_caught
    with trio.testing.assert_checkpoints():
        listener = await pt.listen(f"fifo://{tmp_path}/cp")
    await listener.aclose()

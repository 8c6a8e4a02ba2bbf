"""Datagram connectors: udp4, udp6, local (path, abstract, unnamed pair).

Ports packeteer's ConnectorDGram tests (messaging, multiple clients blocking
and async) and adds what the trio face promises: channels, truncation and
oversize errors, receive_many/send_many, close wake-ups, Busy, no fd leaks.
"""

from __future__ import annotations

import errno
import re
import socket
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

import packeteer_trio as p7r
from packeteer_trio import URL, InvalidURL

from .conftest import open_fds

LINUX = sys.platform.startswith("linux")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 here")
needs_abstract = pytest.mark.skipif(not LINUX, reason="abstract names are Linux-only")
needs_af_unix = pytest.mark.posix_only(reason="local:// (AF_UNIX) is POSIX-only")

# A factory makes the n-th URL of a kind, given the test's tmp_path.
Kind = Callable[[Path, int], str]


def _abstract(tmp_path: Path, n: int) -> str:
    return f"local:///%00p7r-test-{uuid.uuid4().hex[:12]}-{n}?behaviour=datagram"


KINDS = [
    pytest.param(lambda tmp, n: "udp4://127.0.0.1:0", id="udp4"),
    pytest.param(lambda tmp, n: "udp6://[::1]:0", id="udp6", marks=needs_ipv6),
    pytest.param(
        lambda tmp, n: f"local://{tmp}/dgram-{n}.sock?behaviour=datagram",
        id="local_path",
        marks=needs_af_unix,
    ),
    pytest.param(_abstract, id="local_abstract", marks=needs_abstract),
]


async def _exchange(
    sender: p7r.DatagramSocket, receiver: p7r.DatagramSocket, marker: int
) -> None:
    """packeteer's send_message_dgram: the sender is seen as sender.url."""
    message = f"hello, world! [{marker}]".encode()
    await sender.send_to(message, receiver.url)
    with trio.fail_after(5):
        data, source = await receiver.receive_from()
    assert data == message
    assert source == sender.url


@pytest.mark.trio
@pytest.mark.parametrize("kind", KINDS)
async def test_messaging(kind: Kind, tmp_path: Path) -> None:
    async with (
        await p7r.open_datagram(kind(tmp_path, 1)) as server,
        await p7r.open_datagram(kind(tmp_path, 2)) as client,
    ):
        await _exchange(client, server, 1)
        await _exchange(server, client, 2)
        # The URL as text works too, and so does the sender handed back.
        await client.send_to(b"as text", str(server.url))
        data, source = await server.receive_from()
        await server.send_to(data.upper(), source)
        assert await client.receive_from() == (b"AS TEXT", server.url)


@pytest.mark.trio
@pytest.mark.parametrize("kind", KINDS)
async def test_multiple_clients_blocking(kind: Kind, tmp_path: Path) -> None:
    async with (
        await p7r.open_datagram(kind(tmp_path, 1)) as server,
        await p7r.open_datagram(kind(tmp_path, 2)) as client1,
        await p7r.open_datagram(kind(tmp_path, 3)) as client2,
    ):
        await _exchange(client1, server, 1)
        await _exchange(server, client1, 2)
        await _exchange(client2, server, 3)
        await _exchange(server, client2, 4)


@pytest.mark.trio
@pytest.mark.parametrize("kind", KINDS)
async def test_multiple_clients_replies_routed_by_sender(
    kind: Kind, tmp_path: Path
) -> None:
    """packeteer's multiple_clients_async: each reply reaches its own client."""
    async with (
        await p7r.open_datagram(kind(tmp_path, 1)) as server,
        await p7r.open_datagram(kind(tmp_path, 2)) as client1,
        await p7r.open_datagram(kind(tmp_path, 3)) as client2,
    ):

        async def serve() -> None:
            seen = 0
            while seen < 4:
                batch = await server.receive_many()
                seen += len(batch)
                await server.send_many((b"re: " + d, source) for d, source in batch)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            for client in (client1, client2):
                for n in (1, 2):
                    await client.send_to(f"{client.url} #{n}".encode(), server.url)
            with trio.fail_after(5):
                for client in (client1, client2):
                    got = {(await client.receive_from())[0] for _ in range(2)}
                    assert got == {f"re: {client.url} #{n}".encode() for n in (1, 2)}


@pytest.mark.trio
@pytest.mark.parametrize("kind", KINDS)
async def test_connected_channel_round_trips(kind: Kind, tmp_path: Path) -> None:
    async with await p7r.open_datagram(kind(tmp_path, 1)) as server:
        local = kind(tmp_path, 2) if "local" in server.url.scheme else None
        chan = await p7r.connect_datagram(server.url, local=local)
        async with chan:
            assert isinstance(chan, trio.abc.Channel)
            assert chan.url == server.url == chan.peer_address
            for n in range(20):
                await chan.send(b"ping %d" % n)
                data, source = await server.receive_from()
                assert data == b"ping %d" % n
                assert source == chan.local_address
                await server.send_to(b"pong %d" % n, source)
                assert await chan.receive() == b"pong %d" % n


@pytest.mark.trio
@needs_abstract
async def test_local_channel_autobinds_so_replies_arrive(tmp_path: Path) -> None:
    url = f"local://{tmp_path}/srv?behaviour=datagram"
    async with (
        await p7r.open_datagram(url) as server,
        await p7r.connect_datagram(server.url) as chan,
    ):
        await chan.send(b"hi")
        _, source = await server.receive_from()
        assert source.path.startswith("/\0")
        assert source == chan.local_address
        await server.send_to(b"back", source)
        assert await chan.receive() == b"back"


@needs_af_unix
@pytest.mark.trio
async def test_unnamed_pair_reads_back() -> None:
    async with await p7r.open_datagram("local://?behaviour=datagram") as pair:
        await pair.send_to(b"one", pair.url)
        await pair.send_to(b"", pair.url)
        data, source = await pair.receive_from()
        assert (data, source) == (b"one", pair.url)
        await pair.send_to(b"two", source)  # the sender works as an address
        assert await pair.receive_many() == [(b"", pair.url), (b"two", pair.url)]
        with pytest.raises(InvalidURL, match="only to itself"):
            await pair.send_to(b"x", "local:///tmp/elsewhere")
    async with await p7r.connect_datagram("local://?behaviour=datagram") as chan:
        await chan.send(b"loop")
        assert await chan.receive() == b"loop"


@pytest.mark.trio
@pytest.mark.parametrize("kind", KINDS)
async def test_zero_length_datagrams_are_data(kind: Kind, tmp_path: Path) -> None:
    async with (
        await p7r.open_datagram(kind(tmp_path, 1)) as a,
        await p7r.open_datagram(kind(tmp_path, 2)) as b,
    ):
        await a.send_to(b"", b.url)
        with trio.fail_after(5):
            assert await b.receive_from() == (b"", a.url)


@pytest.mark.trio
@pytest.mark.parametrize("kind", KINDS)
async def test_truncation_is_an_error(kind: Kind, tmp_path: Path) -> None:
    async with (
        await p7r.open_datagram(kind(tmp_path, 1)) as a,
        await p7r.open_datagram(kind(tmp_path, 2)) as b,
    ):
        await a.send_to(b"x" * 1000, b.url)
        await a.send_to(b"fits", b.url)
        with pytest.raises(OSError, match="max_size=100") as info:
            await b.receive_from(max_size=100)
        assert info.value.errno == errno.EMSGSIZE
        assert str(b.url) in str(info.value)
        if LINUX:
            assert "1000-byte" in str(info.value)
        assert await b.receive_from(max_size=100) == (b"fits", a.url)
        # Exactly max_size fits.
        await a.send_to(b"y" * 100, b.url)
        assert (await b.receive_from(max_size=100))[0] == b"y" * 100


@pytest.mark.trio
async def test_truncation_in_receive_many_is_deferred_not_lost() -> None:
    async with (
        await p7r.open_datagram("udp4://127.0.0.1:0") as a,
        await p7r.open_datagram("udp4://127.0.0.1:0") as b,
    ):
        await a.send_many([(b"one", b.url), (b"z" * 500, b.url), (b"two", b.url)])
        assert await b.receive_many(max_size=100) == [(b"one", a.url)]
        with pytest.raises(OSError, match="max_size=100"):
            await b.receive_many(max_size=100)
        assert await b.receive_many(max_size=100) == [(b"two", a.url)]


@pytest.mark.trio
async def test_channel_truncation_is_an_error() -> None:
    async with (
        await p7r.open_datagram("udp4://127.0.0.1:0") as server,
        await p7r.connect_datagram(server.url) as chan,
    ):
        await chan.send(b"?")
        _, source = await server.receive_from()
        await server.send_to(b"q" * 300, source)
        with pytest.raises(OSError, match="max_size=10") as info:
            await chan.receive(max_size=10)
        assert info.value.errno == errno.EMSGSIZE


@pytest.mark.trio
async def test_oversize_send_names_size_and_url() -> None:
    async with await p7r.open_datagram("udp4://127.0.0.1:0") as a:
        with pytest.raises(OSError, match="70000 bytes") as info:
            await a.send_to(b"x" * 70000, a.url)
        assert info.value.errno == errno.EMSGSIZE
        assert str(a.url) in str(info.value)
        with pytest.raises(OSError, match="70000 bytes"):
            await a.send_many([(b"ok", a.url), (b"x" * 70000, a.url)])
        assert await a.receive_from() == (b"ok", a.url)  # sent before the failure
        async with await p7r.connect_datagram(a.url) as chan:
            with pytest.raises(OSError, match="70000 bytes"):
                await chan.send(b"x" * 70000)


@pytest.mark.trio
async def test_receive_many_takes_all_queued_behind_one_checkpoint() -> None:
    async with (
        await p7r.open_datagram("udp4://127.0.0.1:0") as a,
        await p7r.open_datagram("udp4://127.0.0.1:0") as b,
    ):
        items = [(b"msg %d" % n, b.url) for n in range(10)]
        with trio.testing.assert_checkpoints():
            await a.send_many(items)
        # Count schedule points: a task that yields in a loop would see more.
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.lowlevel.checkpoint()
            before = ticks
            with trio.testing.assert_checkpoints():
                batch = await b.receive_many()
            # One yield; the ticker may also have run once in our own batch.
            assert ticks - before <= 2
            nursery.cancel_scope.cancel()
        assert batch == [(data, a.url) for data, _ in items]
        await a.send_many(items)
        assert len(await b.receive_many(max_count=4)) == 4
        assert len(await b.receive_many()) == 6
        with pytest.raises(ValueError):
            await b.receive_many(max_count=0)


@pytest.mark.trio
async def test_send_many_waits_when_buffer_full() -> None:
    async with (
        await p7r.open_datagram("udp4://127.0.0.1:0") as a,
        await p7r.open_datagram("udp4://127.0.0.1:0") as b,
    ):
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        await a.send_many((b"d" * 1000, b.url) for _ in range(200))
        got = 0
        with trio.move_on_after(0.5):
            while got < 200:
                got += len(await b.receive_many())
        assert got > 0


@pytest.mark.trio
@pytest.mark.parametrize("kind", KINDS)
async def test_close_wakes_waiting_receiver(kind: Kind, tmp_path: Path) -> None:
    sock = await p7r.open_datagram(kind(tmp_path, 1))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def receive() -> None:
                with pytest.raises(
                    trio.ClosedResourceError, match=re.escape(str(sock.url))
                ):
                    await sock.receive_from()

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            await sock.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await sock.send_to(b"x", sock.url)
    with pytest.raises(trio.ClosedResourceError):
        sock._scheduler_fds()
    await sock.aclose()  # idempotent


@pytest.mark.trio
async def test_channel_close_wakes_receiver_and_refuses_use() -> None:
    async with await p7r.open_datagram("udp4://127.0.0.1:0") as server:
        chan = await p7r.connect_datagram(server.url)
        async with trio.open_nursery() as nursery:

            async def receive() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await chan.receive()

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            await chan.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await chan.receive()
        with pytest.raises(trio.ClosedResourceError):
            await chan.send(b"x")


@pytest.mark.trio
async def test_busy_on_concurrent_receive() -> None:
    async with await p7r.open_datagram("udp4://127.0.0.1:0") as sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sock.receive_from)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await sock.receive_from()
            with pytest.raises(trio.BusyResourceError):
                await sock.receive_many()
            nursery.cancel_scope.cancel()
        chan = await p7r.connect_datagram(sock.url)
        async with chan, trio.open_nursery() as nursery:
            nursery.start_soon(chan.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await chan.receive()
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_cancelled_receive_takes_nothing() -> None:
    async with (
        await p7r.open_datagram("udp4://127.0.0.1:0") as a,
        await p7r.open_datagram("udp4://127.0.0.1:0") as b,
    ):
        await a.send_to(b"keep me", b.url)
        with trio.CancelScope() as scope:
            scope.cancel()
            await b.receive_from()
        assert await b.receive_from() == (b"keep me", a.url)


@pytest.mark.wine_differs(
    reason="Wine 8 keeps the ICMP port-unreachable error in SO_ERROR: recv() "
    "says WSAEWOULDBLOCK and the socket never polls readable (Windows: "
    "WSAECONNRESET from recv())"
)
@pytest.mark.trio
async def test_connected_udp_peer_gone_is_refused_not_a_hang() -> None:
    gone = await p7r.open_datagram("udp4://127.0.0.1:0")
    address = gone.url
    await gone.aclose()
    async with await p7r.connect_datagram(address) as chan:
        await chan.send(b"anyone?")
        with (
            trio.fail_after(5),
            pytest.raises(ConnectionRefusedError, match=re.escape(str(address))),
        ):
            await chan.receive()


@needs_af_unix
@pytest.mark.trio
async def test_local_datagram_file_is_removed_on_close(tmp_path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - for mypy; never run there
        pytest.skip("POSIX only")
    path = tmp_path / "owned.sock"
    sock = await p7r.open_datagram(f"local://{path}?behaviour=datagram&mode=0600")
    assert sock.url == URL.parse(f"local://{path}?behaviour=datagram")
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    await sock.aclose()
    assert not path.exists()
    # A stale socket file is replaced; a regular file is not.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()
    async with await p7r.open_datagram(f"local://{path}?behaviour=dgram"):
        pass
    path.write_text("precious")
    with pytest.raises(FileExistsError):
        await p7r.open_datagram(f"local://{path}?behaviour=datagram")
    assert path.read_text() == "precious"


@needs_af_unix
@pytest.mark.trio
async def test_local_send_to_missing_path_names_it(tmp_path: Path) -> None:
    async with await p7r.open_datagram(
        f"local://{tmp_path}/me?behaviour=datagram"
    ) as me:
        missing = f"local://{tmp_path}/nobody?behaviour=datagram"
        with pytest.raises(FileNotFoundError, match="nobody"):
            await me.send_to(b"x", missing)
        with pytest.raises(FileNotFoundError, match="nobody"):
            await p7r.connect_datagram(missing)


@pytest.mark.trio
async def test_addresses_checked_before_sending() -> None:
    async with await p7r.open_datagram("udp4://127.0.0.1:0") as sock:
        with pytest.raises(InvalidURL, match="IPv6"):
            await sock.send_to(b"x", "udp6://[::1]:9")
        with pytest.raises(InvalidURL, match="not a udp"):
            await sock.send_to(b"x", "tcp://127.0.0.1:9")
        with pytest.raises(InvalidURL, match="port"):
            await sock.send_to(b"x", "udp4://127.0.0.1")
        with pytest.raises(InvalidURL):
            await sock.send_to(b"x", "not a url")


@pytest.mark.trio
async def test_host_names_resolve() -> None:
    async with (
        await p7r.open_datagram("udp://localhost:0") as a,
        await p7r.open_datagram("udp4://127.0.0.1:0") as b,
    ):
        assert a.url.scheme in ("udp4", "udp6")
        if a.url.scheme == "udp4":
            await b.send_to(b"by name", f"udp://localhost:{a.url.port}")
            assert await a.receive_from() == (b"by name", b.url)


@pytest.mark.trio
async def test_invalid_url_names_the_right_function() -> None:
    with pytest.raises(InvalidURL, match="connect_datagram"):
        await p7r.connect("udp4://127.0.0.1:9")
    with pytest.raises(InvalidURL, match="open_datagram"):
        await p7r.listen("udp4://127.0.0.1:9")
    for url in ("tcp://127.0.0.1:9", "anon://"):
        with pytest.raises(InvalidURL, match=r"connect\(\) or listen\(\)"):
            await p7r.open_datagram(url)
        with pytest.raises(InvalidURL, match=r"connect\(\) or listen\(\)"):
            await p7r.connect_datagram(url)
    with pytest.raises(InvalidURL):
        URL.parse("tcp://127.0.0.1:9?behaviour=datagram")
    with pytest.raises(InvalidURL, match="port"):
        await p7r.connect_datagram("udp4://127.0.0.1")
    with pytest.raises(InvalidURL):
        await p7r.connect_datagram("udp4://127.0.0.1:9", local="local:///tmp/x")


@needs_af_unix
@pytest.mark.trio
async def test_invalid_local_url_names_the_right_function(tmp_path: Path) -> None:
    url = f"local://{tmp_path}/x?behaviour=datagram"
    with pytest.raises(InvalidURL, match="connect_datagram"):
        await p7r.connect(url)
    with pytest.raises(InvalidURL, match="open_datagram"):
        await p7r.listen(url)
    for call in (p7r.open_datagram, p7r.connect_datagram):
        with pytest.raises(InvalidURL, match=r"connect\(\) or listen\(\)"):
            await call(f"local://{tmp_path}/x")
    with pytest.raises(InvalidURL, match="behaviour=datagram"):
        await p7r.open_datagram(f"local://{tmp_path}/x")
    assert not list(tmp_path.iterdir())  # nothing was created


@pytest.mark.trio
@pytest.mark.parametrize(
    "kinds",
    [
        pytest.param((0, 3), id="udp"),
        pytest.param((1, 2), id="local", marks=needs_af_unix),
    ],
)
async def test_no_fd_leak_after_many_cycles(
    tmp_path: Path, kinds: tuple[int, int]
) -> None:
    async def cycle(n: int) -> None:
        kind = kinds[n % 2]
        if kind == 0:
            sock = await p7r.open_datagram("udp4://127.0.0.1:0")
        elif kind == 1:
            sock = await p7r.open_datagram(
                f"local://{tmp_path}/c.sock?behaviour=datagram"
            )
        elif kind == 2:
            sock = await p7r.open_datagram("local://?behaviour=datagram")
        else:
            chan = await p7r.connect_datagram("udp4://127.0.0.1:9")
            with trio.move_on_after(0):
                await chan.receive()
            await chan.aclose()
            return
        with trio.CancelScope() as scope:
            scope.deadline = trio.current_time() + 0.0001
            await sock.receive_from()  # cancelled while waiting
        await sock.aclose()

    await cycle(0)  # warm up lazily created resources
    await cycle(1)
    before = open_fds()
    for n in range(1000):
        await cycle(n)
    assert open_fds() == before
    assert not list(tmp_path.iterdir())


@needs_af_unix
@pytest.mark.trio
async def test_local_backpressure_waits_then_delivers_everything(
    tmp_path: Path,
) -> None:
    """AF_UNIX datagrams are reliable: a full peer queue makes senders wait."""
    count = 3000
    async with (
        await p7r.open_datagram(f"local://{tmp_path}/s?behaviour=datagram") as server,
        await p7r.open_datagram(f"local://{tmp_path}/c?behaviour=datagram") as client,
    ):
        received: list[bytes] = []

        async def drain() -> None:
            while len(received) < count:
                await trio.sleep(0.001)  # a slow reader: the queue fills up
                received.extend(data for data, _ in await server.receive_many())

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                await client.send_many((b"%d" % n, server.url) for n in range(count))
        assert received == [b"%d" % n for n in range(count)]


@pytest.mark.trio
@pytest.mark.parametrize(
    "url",
    [
        "udp4://127.0.0.1:0",
        pytest.param("local://?behaviour=datagram", marks=needs_af_unix),
    ],
)
async def test_open_and_connect_are_checkpoints(url: str) -> None:
    with trio.testing.assert_checkpoints():
        sock = await p7r.open_datagram(url)
    await sock.aclose()
    with trio.CancelScope() as scope:
        scope.cancel()
        await p7r.open_datagram(url)
    assert scope.cancelled_caught
    with trio.testing.assert_checkpoints():
        channel = await p7r.connect_datagram("udp4://127.0.0.1:9")
    await channel.aclose()


@pytest.mark.trio
async def test_windows_udp_reset_is_refused() -> None:
    # Windows reports an ICMP port unreachable as WSAECONNRESET from recv();
    # callers get the same ConnectionRefusedError as on POSIX.
    async with await p7r.connect_datagram("udp4://127.0.0.1:9") as chan:
        error = chan._error(ConnectionResetError(errno.ECONNRESET, "reset"), "receive")
    assert isinstance(error, ConnectionRefusedError)
    assert "udp4://127.0.0.1:9" in str(error) and "nothing is receiving" in str(error)

"""``?reuseport=1``: several listening sockets on one port (SO_REUSEPORT).

Linux spreads new connections (and datagrams, by sender) over the sockets
of a port; the spreading tests are Linux-only, binding twice is POSIX.
"""

from __future__ import annotations

import errno
import socket

import pytest
import trio

import packeteer_trio as pt
from packeteer_trio import URL, InvalidURL

HAS_REUSEPORT = hasattr(socket, "SO_REUSEPORT")
needs_reuseport = pytest.mark.skipif(
    not HAS_REUSEPORT, reason="this platform has no SO_REUSEPORT"
)
CONNECTIONS = 64  # new connections are hashed over the sockets: 2 ** -63 to miss


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("tcp://127.0.0.1:0?reuseport=0", "0"),
        ("tcp://127.0.0.1:0?reuseport=no", "0"),
        ("udp4://127.0.0.1:0?reuseport=false", "0"),
    ],
)
def test_off_parses_everywhere(text: str, value: str) -> None:
    assert URL.parse(text).query["reuseport"] == value


@needs_reuseport
@pytest.mark.parametrize(
    "text",
    ["tcp://:8080?reuseport", "tcp6://[::1]:1?reuseport=yes", "udp://:1?reuseport=1"],
)
def test_on_parses_where_the_os_has_it(text: str) -> None:
    assert URL.parse(text).query["reuseport"] == "1"


@pytest.mark.parametrize("scheme", ["tcp", "udp4"])
def test_not_a_boolean(scheme: str) -> None:
    text = f"{scheme}://127.0.0.1:0?reuseport=2"
    with pytest.raises(InvalidURL, match=r"reuseport='2' is not a boolean") as info:
        URL.parse(text)
    assert repr(text) in str(info.value)


@pytest.mark.skipif(HAS_REUSEPORT, reason="this platform has SO_REUSEPORT")
def test_refused_where_the_os_lacks_it() -> None:
    with pytest.raises(InvalidURL, match=r"no SO_REUSEPORT.*share one listening"):
        URL.parse("tcp://127.0.0.1:8080?reuseport=1")


@needs_reuseport
@pytest.mark.trio
async def test_tcp_binds_twice_only_with_it() -> None:
    first = await pt.listen("tcp4://127.0.0.1:0?reuseport=1")
    async with first:
        port = first.url.port
        with pytest.raises(OSError) as info:
            await pt.listen(f"tcp4://127.0.0.1:{port}")
        assert info.value.errno == errno.EADDRINUSE
        assert f"tcp4://127.0.0.1:{port}" in str(info.value)
        async with await pt.listen(f"tcp4://127.0.0.1:{port}?reuseport=1") as second:
            assert second.url == first.url
            option = getattr(socket, "SO_REUSEPORT")  # noqa: B009 (not on Windows)
            assert second.sockets[0].getsockopt(socket.SOL_SOCKET, option)
    # The option is about binding: a client may carry it and is not refused.
    async with await pt.listen("tcp4://127.0.0.1:0") as plain:
        async with await pt.connect(f"{plain.url}?reuseport=1"):
            async with await plain.accept():
                pass


@needs_reuseport
@pytest.mark.trio
async def test_udp_binds_twice_only_with_it() -> None:
    first = await pt.open_datagram("udp4://127.0.0.1:0?reuseport=1")
    async with first:
        port = first.url.port
        with pytest.raises(OSError) as info:
            await pt.open_datagram(f"udp4://127.0.0.1:{port}")
        assert info.value.errno == errno.EADDRINUSE
        url = f"udp4://127.0.0.1:{port}?reuseport=1"
        async with await pt.open_datagram(url) as second:
            assert second.url.port == port


@pytest.mark.linux_only(reason="Linux balances SO_REUSEPORT sockets")
@pytest.mark.trio
async def test_connections_are_spread_over_the_listeners() -> None:
    first = await pt.listen("tcp4://127.0.0.1:0?reuseport=1")
    second = await pt.listen(f"{first.url}?reuseport=1")
    accepted = {0: 0, 1: 0}
    clients = []
    async with first, second, trio.open_nursery() as nursery:

        async def accept(index: int, listener: pt.Listener) -> None:
            while True:
                stream = await listener.accept()
                accepted[index] += 1
                await stream.aclose()

        nursery.start_soon(accept, 0, first)
        nursery.start_soon(accept, 1, second)
        for _ in range(CONNECTIONS):
            clients.append(await pt.connect(first.url))
        with trio.fail_after(10):
            while sum(accepted.values()) < CONNECTIONS:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    for client in clients:
        await client.aclose()
    assert accepted[0] and accepted[1], accepted


@pytest.mark.linux_only(reason="Linux balances SO_REUSEPORT sockets")
@pytest.mark.trio
async def test_datagrams_are_spread_by_sender() -> None:
    first = await pt.open_datagram("udp4://127.0.0.1:0?reuseport=1")
    second = await pt.open_datagram(f"{first.url}?reuseport=1")
    got: dict[int, set[URL]] = {0: set(), 1: set()}
    async with first, second, trio.open_nursery() as nursery:

        async def receive(index: int, sock: pt.DatagramSocket) -> None:
            while True:
                _, sender = await sock.receive_from()
                got[index].add(sender)

        nursery.start_soon(receive, 0, first)
        nursery.start_soon(receive, 1, second)
        for _ in range(CONNECTIONS):
            async with await pt.connect_datagram(first.url) as channel:
                await channel.send(b"x")
        with trio.fail_after(10):
            while len(got[0]) + len(got[1]) < CONNECTIONS:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert got[0] and got[1], got
    assert not got[0] & got[1]  # one sender, one socket

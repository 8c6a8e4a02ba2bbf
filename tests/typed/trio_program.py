# pyright: strict
"""A typed user program of the trio face: every public verb, as users write it.

``mypy --strict`` and pyright strict check this file (``.ci/run``); the
``assert_type`` calls pin what the declared types promise, and the lines
under ``if TYPE_CHECKING`` are calls a checker must refuse (each carries the
ignore of the error it must raise; an ignore that is not needed fails both
checkers). ``tests/test_typing.py`` runs :func:`main`, so every narrowing
shown here is also true at run time.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

import packeteer_trio as pt

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type


async def echo(stream: pt.Stream) -> None:
    async for chunk in stream:
        await stream.send_all(chunk)


def urls() -> None:
    url = pt.URL.parse("tcp://localhost:8080/?nodelay=1")
    assert_type(url.port, int | None)
    assert_type(url.query, pt.Query)
    assert_type(url.behaviour, str)
    moved = url.replace(host="127.0.0.1", port=None, query={"a": "1"})
    assert moved.port is None and moved.query["a"] == "1"
    try:
        pt.URL.parse("tcp4://[::1]:80")
    except pt.InvalidURL as exc:
        assert "tcp4" in str(exc)
    if TYPE_CHECKING:
        url.replace(port="80")  # type: ignore[arg-type]


async def streams(tmp: Path) -> None:
    async with trio.open_nursery() as nursery:
        listeners: list[pt.Listener] = await nursery.start(
            pt.serve, "tcp://127.0.0.1:0", echo
        )
        stream = await pt.connect(listeners[0].url)
        assert_type(stream, pt.Stream)
        async with stream:
            await stream.send_all(b"ping")
            buffer = bytearray(4)
            count = 0
            while count < 4:
                count += await stream.receive_into(memoryview(buffer)[count:])
            assert buffer == b"ping"
            assert stream.peer_address == listeners[0].url
            assert_type(stream.fileno(), int)
            # A URL picks the transport at run time: narrow to reach what only
            # sockets have.
            assert isinstance(stream, pt.SocketStream)
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert_type(stream.socket, socket.socket)
            with (tmp / "file").open("w+b") as file:
                file.write(b"file")
                assert_type(await stream.send_file(file, offset=0, count=None), int)
            got = b""
            while len(got) < 4:
                got += await stream.receive_some()
            assert got == b"file"
            await stream.send_eof()
            assert await stream.receive_some() == b""
            if TYPE_CHECKING:
                await stream.receive_into("text")  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()

    if sys.platform != "win32":
        async with await pt.listen(f"local://{tmp}/app.sock") as listener:
            assert_type(listener, pt.Listener)
            async with await pt.connect(listener.url) as client:
                server = await listener.accept()
                assert_type(server, pt.Stream)
                async with server:
                    if isinstance(server, pt.SocketStream) and sys.platform == "linux":
                        pid, uid, _gid = server.peer_credentials()
                        assert (pid, uid) == (os.getpid(), os.getuid())
                    await client.send_all(b"x")
                    assert await server.receive_some(1) == b"x"
                    if isinstance(client, pt.SocketStream):
                        assert isinstance(server, pt.SocketStream)
                        read_fd, write_fd = os.pipe()
                        await client.send_fds(b"fd", [write_fd])
                        message, fds = await server.receive_fds(2, 1)
                        assert_type(fds, list[int])
                        for fd in (read_fd, write_fd, *fds):
                            os.close(fd)
                        assert message == b"fd"

    pipe = await pt.connect("anon://")
    if sys.platform == "win32":  # pipe HANDLEs there
        assert isinstance(pipe, pt.HandleStream)
        send, receive = pipe.split()
        assert_type(send, pt.HandleStream)
    else:
        assert isinstance(pipe, pt.PipeStream)
        send, receive = pipe.split()
        assert_type(send, pt.PipeStream)
    async with send, receive:
        await send.send_all(b"split")
        assert await receive.receive_some() == b"split"


async def datagrams() -> None:
    async with await pt.open_datagram("udp4://127.0.0.1:0") as sock:
        assert_type(sock, pt.DatagramSocket)
        # Given a local address the channel is a socket's: no narrowing.
        channel = await pt.connect_datagram(sock.url, local="udp4://127.0.0.1:0")
        assert_type(channel, pt.DatagramChannel)
        async with channel:
            await channel.send(b"one")
            data, sender = await sock.receive_from()
            assert_type(sender, pt.URL)
            await sock.send_to(data.upper(), sender)
            assert await channel.receive() == b"ONE"
            await sock.send_many([(b"a", sender), (b"b", sender)])
            assert await channel.receive() == b"a"
            assert await channel.receive(max_size=16) == b"b"
            await channel.send(b"c")
            batch = await sock.receive_many(max_count=8)
            assert_type(batch, list[tuple[bytes, pt.URL]])
        # Without one, the URL could name a packet device (tun://, tap://).
        maybe = await pt.connect_datagram(sock.url)
        assert_type(maybe, pt.DatagramChannel | pt.PacketChannel)
        async with maybe:
            if isinstance(maybe, pt.DatagramChannel):
                assert_type(maybe.socket, socket.socket)
            await maybe.send(b"d")
            assert (await sock.receive_from())[0] == b"d"
        if TYPE_CHECKING:
            await sock.send_to(b"x", 1234)  # type: ignore[arg-type]


async def scheduler() -> None:
    seen: list[pt.Events] = []
    done = trio.Event()

    def on_timer(now: float, events: pt.Events, connector: object) -> None:
        assert connector is None
        seen.append(events)

    async def on_read(now: float, events: pt.Events, connector: object) -> None:
        assert isinstance(connector, pt.Stream)
        assert await connector.receive_some() == b"ready"
        seen.append(events)
        done.set()

    def on_user(now: float, events: pt.Events, connector: object) -> None:
        seen.append(events)

    stream = await pt.connect("anon://")
    async with stream, pt.open_scheduler() as sched:
        assert_type(sched, pt.Scheduler)
        reg = sched.register_connector(pt.Events.READ, stream, on_read, oneshot=True)
        assert_type(reg, pt.Registration)
        sched.schedule_once(0, on_timer)
        sched.schedule_at(trio.current_time(), on_timer)
        sched.schedule(0.001, on_timer, count=2)
        sched.register_event(pt.Events.USER, on_user)
        sched.fire_events(pt.Events.USER)
        await stream.send_all(b"ready")
        await done.wait()
        sched.unregister_connector(stream)
        sched.unschedule(on_timer)
        sched.unregister_event(pt.Events.USER, on_user)
        reg.cancel()
    assert pt.Events.READ in seen and pt.Events.USER in seen


class Relay:
    """``relay://HOST:PORT``: a user scheme over packeteer's own tcp streams."""

    async def connect(self, url: pt.URL) -> trio.abc.Stream:
        return await pt.connect(url.replace(scheme="tcp"))

    async def listen(
        self, url: pt.URL, backlog: int | None
    ) -> trio.abc.Listener[trio.abc.Stream]:
        return await pt.listen(url.replace(scheme="tcp"), backlog=backlog)


async def user_scheme() -> None:
    # A listener hands its sockets over (to another server, say).
    listener = await pt.listen("tcp://127.0.0.1:0")
    for sock in listener.detach():
        assert_type(sock, socket.socket)
        sock.close()
    await listener.aclose()  # nothing left to close, and no error

    factory: pt.StreamSchemeFactory = Relay()
    pt.register_scheme("relay", factory, replace=True)
    try:
        async with await pt.listen("relay://127.0.0.1:0") as listener:
            async with await pt.connect(listener.url) as client:
                # Our own streams pass through; other trio streams come
                # wrapped (pt.WrappedStream, its packeteer ``transport``).
                assert isinstance(client, pt.SocketStream)
                async with await listener.accept() as server:
                    await client.send_all(b"hi")
                    assert await server.receive_some() == b"hi"
    finally:
        pt.unregister_scheme("relay")


async def main(tmp: Path) -> None:
    urls()
    await streams(tmp)
    await datagrams()
    await scheduler()
    await user_scheme()
    assert_type(pt.__version__, str)

# pyright: strict
"""A typed user program of the anyio face (``packeteer_trio.anyio_compat``).

Checked by ``mypy --strict`` and pyright strict, run by ``tests/test_typing.py``
under anyio's asyncio and trio backends; see ``trio_program.py`` for how the
checks work.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

import packeteer_trio as pt
from packeteer_trio import anyio_compat as pa
from packeteer_trio.anyio_compat import PacketeerAttribute

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type


async def echo(stream: pa.Stream) -> None:
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except anyio.EndOfStream:
            pass


async def streams(tmp: Path) -> None:
    async with anyio.create_task_group() as group:
        listeners: list[pa.Listener] = await group.start(
            pa.serve, "tcp://127.0.0.1:0", echo
        )
        stream = await pa.connect(listeners[0].url)
        assert_type(stream, pa.Stream)
        async with stream:
            assert_type(stream.url, pt.URL)
            assert stream.extra(PacketeerAttribute.url) == stream.url
            await stream.send(item=b"ping")
            assert await stream.receive() == b"ping"
            # Sockets are anyio's SocketStream too: narrowing keeps both types.
            assert isinstance(stream, anyio.abc.SocketStream)
            assert stream.extra(SocketAttribute.remote_port) == listeners[0].url.port
            assert stream.url.scheme == "tcp4"
        # For anyio code that takes a ByteStreamConnectable.
        connectable = pa.URLConnectable(listeners[0].url)
        async with await connectable.connect() as again:
            assert_type(again, pa.Stream)
            await again.send(b"pong")
            assert await again.receive() == b"pong"
        group.cancel_scope.cancel()

    if sys.platform != "win32":
        async with await pa.listen(f"local://{tmp}/anyio.sock") as listener:
            # One abstract type for every scheme's listener (inproc:// too).
            assert_type(listener, pa.Listener)
            async with await pa.connect(listener.url) as client:
                server = await listener.accept()
                assert_type(server, pa.Stream)
                async with server:
                    assert isinstance(client, anyio.abc.UNIXSocketStream)
                    assert isinstance(server, anyio.abc.UNIXSocketStream)
                    read_fd, write_fd = os.pipe()
                    try:
                        await client.send_fds(b"x", [write_fd])
                        message, fds = await server.receive_fds(1, 1)
                        assert message == b"x" and len(fds) == 1
                        os.close(fds[0])
                    finally:
                        os.close(read_fd)
                        os.close(write_fd)
                    assert server.url.scheme == "local"


async def hand_over() -> None:
    listener = await pa.listen("tcp://127.0.0.1:0")
    for sock in listener.detach():
        assert_type(sock, socket.socket)
        sock.close()
    await listener.aclose()  # nothing left to close, and no error


async def datagrams() -> None:
    async with await pa.open_datagram("udp4://127.0.0.1:0") as sock:
        assert_type(sock, pa.DatagramSocket)
        channel = await pa.connect_datagram(sock.url, local="udp4://127.0.0.1:0")
        assert_type(channel, pa.DatagramChannel)
        async with channel:
            await channel.send(b"ping")
            data, sender = await sock.receive()
            assert_type(sender, pt.URL)
            await sock.send((data.upper(), sender))
            assert await channel.receive() == b"PING"
        maybe = await pa.connect_datagram(sock.url)
        assert_type(maybe, pa.DatagramChannel | pa.PacketChannel)
        await maybe.aclose()
        if TYPE_CHECKING:
            await sock.send(b"no address")  # type: ignore[arg-type]


async def narrowed_datagrams(tmp: Path) -> None:
    """What only descriptor-backed datagram sockets have, after isinstance."""
    if sys.platform == "win32":
        return
    server = await pa.open_datagram(f"local://{tmp}/dgram.sock?behaviour=datagram")
    client = await pa.open_datagram(f"local://{tmp}/client.sock?behaviour=datagram")
    async with server, client:
        assert isinstance(server, pa.OSDatagramSocket)
        assert isinstance(client, pa.OSDatagramSocket)
        read_fd, write_fd = os.pipe()
        try:
            await client.send_fds_to(b"fd", [write_fd], server.url)
            message, fds, sender = await server.receive_fds_from(2, 1)
            assert_type(sender, pt.URL)
            assert message == b"fd" and len(fds) == 1 and sender == client.url
            os.close(fds[0])
        finally:
            os.close(read_fd)
            os.close(write_fd)


async def main(tmp: Path) -> None:
    await streams(tmp)
    await hand_over()
    await datagrams()
    await narrowed_datagrams(tmp)

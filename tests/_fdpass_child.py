"""A second process for tests/test_fdpass.py: ``python -m tests._fdpass_child
ROLE URL``. Uses packeteer_trio's trio face; exits 0 when its part worked."""

from __future__ import annotations

import os
import socket
import sys

import trio

import packeteer_trio as pt


async def stream_receive(url: str) -> None:
    """Take a pipe's write end and a socket over a local:// stream and use
    them: write into the pipe, echo over the socket upper-cased."""
    stream = await pt.connect(url)
    assert isinstance(stream, pt.SocketStream)
    async with stream:
        message, fds = await stream.receive_fds(64, 2)
        assert message == b"pipe and socket", message
        pipe_fd, sock_fd = fds
        os.write(pipe_fd, b"written by the child")
        os.close(pipe_fd)
        with socket.socket(fileno=sock_fd) as sock:
            sock.sendall(sock.recv(100).upper())
        await stream.send_all(b"done")


async def datagram_send(url: str) -> None:
    """Send a pipe's read end in a datagram, then write into the pipe."""
    channel = await pt.connect_datagram(url)
    assert isinstance(channel, pt.OSDatagramChannel)
    read_fd, write_fd = os.pipe()
    async with channel:
        await channel.send_fds(b"a pipe", [read_fd])
        os.close(read_fd)
        os.write(write_fd, b"from the child's pipe")
        os.close(write_fd)


async def credentials_send(url: str) -> None:
    """Send one datagram, from a bound socket, for the receiver to vouch for."""
    async with await pt.connect_datagram(url) as channel:
        await channel.send(b"who am I")


ROLES = {
    "stream-receive": stream_receive,
    "datagram-send": datagram_send,
    "credentials-send": credentials_send,
}

if __name__ == "__main__":
    trio.run(ROLES[sys.argv[1]], sys.argv[2])

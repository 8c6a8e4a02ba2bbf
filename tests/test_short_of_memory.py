"""A socket call the system refuses for lack of memory is retried.

tests/test_faults.py injects the real syscall errors with strace (Linux
only); here the socket object fails, so the same promise is checked on
Windows (under Wine) too, where sockets report WSAENOBUFS: Python's
``errno.ENOBUFS`` is that value there.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest
import trio

import packeteer_trio as pt

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

CODES = [errno.ENOMEM, errno.ENOBUFS]


class _Refusing(socket.socket):
    """A socket whose next ``refusals`` sends and receives fail with ``code``."""

    __slots__ = ()
    code = 0
    refusals = 0

    def _refuse(self) -> None:
        if _Refusing.refusals:
            _Refusing.refusals -= 1
            raise OSError(_Refusing.code, "refused for the test")

    def send(self, data: ReadableBuffer, flags: int = 0, /) -> int:
        self._refuse()
        return super().send(data, flags)

    def recv(self, size: int, flags: int = 0, /) -> bytes:
        self._refuse()
        return super().recv(size, flags)


@contextmanager
def refusing(sock: socket.socket, code: int, times: int) -> Iterator[None]:
    original = sock.__class__
    _Refusing.code, _Refusing.refusals = code, times
    sock.__class__ = _Refusing
    try:
        yield
    finally:
        sock.__class__ = original
        _Refusing.refusals = 0


@pytest.mark.trio
@pytest.mark.parametrize("code", CODES, ids=errno.errorcode.get)
async def test_stream_send_and_receive_retry(code: int) -> None:
    listener = await pt.listen("tcp://127.0.0.1:0")
    async with listener, await pt.connect(listener.url) as client:
        server = await listener.accept()
        async with server:
            assert isinstance(client, pt.SocketStream)
            assert isinstance(server, pt.SocketStream)
            with trio.fail_after(10), refusing(client.socket, code, 3):
                await client.send_all(b"through")
                assert _Refusing.refusals == 0  # all three were met, and retried
            with trio.fail_after(10), refusing(server.socket, code, 3):
                received = b""
                while len(received) < 7:
                    received += await server.receive_some()
                assert _Refusing.refusals == 0
            assert received == b"through"


@pytest.mark.trio
@pytest.mark.parametrize("code", CODES, ids=errno.errorcode.get)
async def test_datagram_send_retries(code: int) -> None:
    """A datagram the kernel had no memory for goes out once it has (within
    the retries' ~63 ms; after them it would be dropped, not raised)."""
    async with await pt.open_datagram("udp4://127.0.0.1:0") as server:
        channel = await pt.connect_datagram(server.url, local="udp4://127.0.0.1:0")
        async with channel:
            with trio.fail_after(10), refusing(channel.socket, code, 3):
                await channel.send(b"datagram")
                assert _Refusing.refusals == 0
            with trio.fail_after(10):
                data, _ = await server.receive_from()
            assert data == b"datagram"

"""The anyio face's socket streams on asyncio loops that have ``add_reader``.

Plain asyncio's selector loop and uvloop: the loop reads the socket ahead of
the caller into a bounded buffer, and ``send`` writes straight to the kernel.
anyio's own asyncio stream turns reading on and off around every
``receive`` (a registration syscall each time on uvloop) and goes through a
transport's buffer on every ``send``; here the socket stays registered while
the buffer is below :data:`HIGH_WATER`, and a send waits only when the
kernel's buffer is full. That is the loop's own speed (see the "anyio on
asyncio and uvloop" section of ``benchmarks/README.md``).

Why a reader callback and not a transport (``connect_accepted_socket``):
a transport reads with ``recv()``, which drops the descriptors an AF_UNIX
peer passes (``receive_fds`` could never see them, since the transport has
read the bytes they came with before anyone asks), and uvloop's transports
write with ``write(2)``, which raises SIGPIPE when the peer is gone. Here
AF_UNIX sockets are read with ``recvmsg`` (descriptors stay with the bytes
they came with) and every write passes ``MSG_NOSIGNAL``.

- Nothing is lost on cancellation: the reader callback fills the buffer and
  a ``receive`` only takes from it after its last await, so bytes read from
  the kernel stay buffered for the next ``receive``. A ``send`` is cancelled
  only before its first byte left, or while waiting for the kernel to take
  the rest (as trio's ``send_all``).
- Waiters are plain futures, woken only when not done: a cancelled wait
  never makes asyncio report ``InvalidStateError``.
- Checkpoints: every operation yields to the loop exactly once when it does
  not wait (anyio's own rule, and a cancel point before anything moves);
  one that waits yields in the wait.
"""

from __future__ import annotations

import array
import asyncio
import errno
import os
import socket
import struct
from collections import deque
from collections.abc import Callable, Collection, Mapping
from io import IOBase
from typing import Any, final

import anyio
import anyio.abc

from .._endpoints import StreamEndpoint
from .._io import SHORT_OF_MEMORY, FaceHooks
from ._backend import Backend, socket_attributes

# Stop reading above this many buffered bytes, start again below LOW_WATER:
# memory per stream stays under HIGH_WATER + READ_SIZE whatever the peer sends.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
READ_SIZE = 65536
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
# Linux's SCM_MAX_FD: the most descriptors one sendmsg() can pass.
_MAX_FDS = 253
_FD_SPACE = socket.CMSG_SPACE(_MAX_FDS * 4) if hasattr(socket, "CMSG_SPACE") else 0
_BYTES_TYPES = (bytes, bytearray)
_LINGER_RESET = struct.pack("ii", 1, 0)


class _ReadAhead(FaceHooks):
    """State, the reader callback and the byte paths shared by both classes."""

    def __init__(self, endpoint: StreamEndpoint, backend: Backend) -> None:
        sock = endpoint.sock
        assert sock is not None
        self.url = endpoint.url
        self._on_close = endpoint.on_close
        self._closed = False
        self._bind(backend)
        self._conflicts(backend, "sending to", "receiving from")
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._yield = asyncio.sleep  # anyio's checkpoint on asyncio is sleep(0)
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # into _chunks[0]
        self._buffered = 0
        # Descriptors that came with the bytes at a stream position (AF_UNIX).
        self._fd_marks: deque[tuple[int, list[int]]] = deque()
        self._read_total = 0
        self._taken_total = 0
        self._eof = False
        self._error: OSError | None = None
        self._did_shutdown = False
        self._receiver: asyncio.Future[None] | None = None
        self._sender: asyncio.Future[None] | None = None
        # Reading ahead starts with the first receive: until then what the peer
        # sent stays in the kernel, so closing a stream nobody read from is
        # what it is without us (on AF_UNIX the peer's next read fails with
        # ECONNRESET, which only unread bytes in the kernel make happen).
        self._reading = False

    # -- the loop's side -------------------------------------------------------

    def _recv(self) -> bytes:
        return self._sock.recv(READ_SIZE)

    def _readable(self) -> None:
        try:
            data = self._recv()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in SHORT_OF_MEMORY:
                return  # still readable: the loop calls us again
            self._error = exc
            self._stop_reading()
        else:
            if data:
                self._chunks.append(data)
                self._buffered += len(data)
                self._read_total += len(data)
                if self._buffered >= HIGH_WATER:
                    self._stop_reading()
            else:
                self._eof = True
                self._stop_reading()
        waiter = self._receiver
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _writable(self) -> None:
        waiter = self._sender
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- receiving -------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        with self._receive_conflict:
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
            if self._chunks and not self._closed:
                await self._yield(0)
            else:
                await self._wait_for_data()
            return self._take(max_bytes)

    def _start_reading(self) -> None:
        # While registered, the loop's reader callback holds the stream: one
        # never closed stays registered (and its fd open) until the loop
        # closes, never a stale number in the selector.
        self._reading = True
        self._loop.add_reader(self._fd, self._readable)

    async def _wait_for_data(self) -> None:
        if not self._reading and not (self._eof or self._error or self._closed):
            if self._buffered < HIGH_WATER:
                self._start_reading()
        while True:
            if self._closed:
                raise self._closed_error()
            if self._chunks:
                return
            if self._error is not None:
                raise self._broken(self._error) from self._error
            if self._eof:
                raise anyio.EndOfStream
            self._receiver = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._receiver = None

    def _take(self, max_bytes: int) -> bytes:
        if self._closed:  # closed by another task while we yielded
            raise self._closed_error()
        chunk, offset = self._chunks[0], self._offset
        if not offset and len(chunk) <= max_bytes:
            self._chunks.popleft()
            data = chunk
        else:
            data = chunk[offset : offset + max_bytes]
            if offset + len(data) == len(chunk):
                self._chunks.popleft()
                self._offset = 0
            else:
                self._offset = offset + len(data)
        self._buffered -= len(data)
        self._taken_total += len(data)
        if self._fd_marks:
            self._drop_passed_fds()
        if not self._reading and self._buffered <= LOW_WATER:
            if not self._eof and self._error is None:
                self._start_reading()
        return data

    def _drop_passed_fds(self) -> None:
        # receive() took the bytes some descriptors came with: like recv(),
        # which has no room for them, it closes them.
        marks = self._fd_marks
        while marks and marks[0][0] < self._taken_total:
            for fd in marks.popleft()[1]:
                _close_fd(fd)

    # -- sending ---------------------------------------------------------------

    async def send(self, item: bytes) -> None:
        with self._send_conflict:
            await self._yield(0)
            if self._closed or self._did_shutdown:
                raise self._closed_error()
            data: Any = item
            if not isinstance(data, _BYTES_TYPES):
                data = memoryview(data).cast("B")
            try:
                sent = self._sock.send(data, _NOSIGNAL)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                if exc.errno not in SHORT_OF_MEMORY:
                    raise self._broken(exc) from exc
                sent = 0
            if sent < len(data):
                await self._send_rest(data, sent)

    async def _send_rest(self, data: Any, sent: int) -> None:
        with memoryview(data) as view:
            while sent < len(view):
                await self._wait_writable_here()
                try:
                    sent += self._sock.send(view[sent:], _NOSIGNAL)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno not in SHORT_OF_MEMORY:
                        raise self._broken(exc) from exc
                    await self._sleep(0.001)

    async def _wait_writable_here(self) -> None:
        self._sender = waiter = self._loop.create_future()
        self._loop.add_writer(self._fd, self._writable)
        try:
            await waiter
        finally:
            self._sender = None
            if not self._closed:
                self._loop.remove_writer(self._fd)
        if self._closed:
            raise self._closed_error()

    async def send_eof(self) -> None:
        with self._send_conflict:
            await self._yield(0)
            if self._closed:
                raise self._closed_error()
            if self._did_shutdown:
                return
            self._did_shutdown = True
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                if exc.errno != errno.ENOTCONN:  # the peer is gone: nothing to end
                    raise self._broken(exc) from exc

    # -- closing ---------------------------------------------------------------

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop_reading()
            self._loop.remove_writer(self._fd)
            # Waiting tasks wake up and raise ClosedResourceError.
            for waiter in (self._receiver, self._sender):
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            if self._buffered and self._sock.family != getattr(socket, "AF_UNIX", -1):
                # Bytes the peer sent and nobody received: the kernel resets a
                # TCP connection closed with unread data; so do we, for the
                # bytes we read ahead (SO_LINGER 0: an RST, not a FIN).
                try:
                    self._sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET
                    )
                except OSError:
                    pass
            self._chunks.clear()
            self._buffered = 0
            while self._fd_marks:
                for fd in self._fd_marks.popleft()[1]:
                    _close_fd(fd)
            self._sock.close()
            self._run_on_close()
        await self._yield(0)

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return socket_attributes(self._sock, self.url)


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


@final
class ReadAheadSocketStream(_ReadAhead, anyio.abc.SocketStream):
    """A connected IP socket read ahead by the loop (asyncio, uvloop)."""


@final
class ReadAheadUNIXSocketStream(_ReadAhead, anyio.abc.UNIXSocketStream):
    """A connected AF_UNIX socket read ahead by the loop; passes descriptors."""

    def _recv(self) -> bytes:
        data, ancdata, _flags, _address = self._sock.recvmsg(
            READ_SIZE, _FD_SPACE, _CLOEXEC
        )
        if ancdata:
            fds = array.array("i")
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % fds.itemsize
                    fds.frombytes(payload[:usable])
            if fds:
                if not data:  # descriptors with no bytes cannot be returned
                    for fd in fds:
                        _close_fd(fd)
                else:
                    self._fd_marks.append((self._read_total, list(fds)))
        return data

    async def send_fds(self, message: bytes, fds: Collection[int | IOBase]) -> None:
        if not message:
            raise ValueError("message must not be empty")
        if not fds:
            raise ValueError("fds must not be empty")
        filenos = [fd if isinstance(fd, int) else fd.fileno() for fd in fds]
        ancdata = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", filenos))]
        with self._send_conflict:
            await self._yield(0)
            if self._closed or self._did_shutdown:
                raise self._closed_error()
            with memoryview(message) as view:
                sent = 0
                while sent < len(view):
                    try:
                        sent += self._sock.sendmsg(
                            [view[sent:]], ancdata, _NOSIGNAL
                        )
                    except BlockingIOError:
                        await self._wait_writable_here()
                        continue
                    except OSError as exc:
                        if exc.errno not in SHORT_OF_MEMORY:
                            raise self._broken(exc) from exc
                        await self._sleep(0.001)
                        continue
                    ancdata = []  # the descriptors went with the first write

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        if not isinstance(msglen, int) or msglen < 0:
            raise ValueError("msglen must be a non-negative integer")
        if not isinstance(maxfds, int) or maxfds < 1:
            raise ValueError("maxfds must be a positive integer")
        with self._receive_conflict:
            if self._chunks and not self._closed:
                await self._yield(0)
            else:
                await self._wait_for_data()
            start = self._taken_total
            marks = self._fd_marks
            # The descriptors that came with the next bytes are ours; taking
            # them off first keeps _take from closing them.
            fds: list[int] = []
            while marks and marks[0][0] <= start:
                fds += marks.popleft()[1]
            message = self._take(msglen) if msglen else b""
        for fd in fds[maxfds:]:  # what recvmsg would have cut (MSG_CTRUNC)
            _close_fd(fd)
        return message, fds[:maxfds]

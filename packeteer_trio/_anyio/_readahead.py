"""The anyio face's socket streams on asyncio loops: read ahead, send direct.

The loop reads the socket ahead of the caller into a bounded buffer, and
``send`` writes straight to the kernel. anyio's own asyncio streams turn
reading on and off around every ``receive`` (a registration syscall each
time on uvloop) and wait for a write event after every ``send``; here the
socket stays registered while the buffer holds less than
:data:`HIGH_WATER` bytes, and a send waits only when the kernel's buffer is
full. That is the loop's own speed (see the "anyio on asyncio and uvloop"
section of ``benchmarks/README.md``).

Two engines fill the buffer. :mod:`._selecting`'s streams have the loop call
a reader callback (``add_reader``): on plain asyncio that costs 2.5x less
CPU per round trip than a selector transport, and AF_UNIX sockets are read
with
``recvmsg``, so descriptors a peer passes stay with the bytes they came with
(a transport's ``recv()`` would drop them before ``receive_fds`` could ask).
:mod:`._transport` has the one on uvloop's TCP transports.

- Nothing is lost on cancellation: the loop fills the buffer, and a
  ``receive`` takes from it only after its last await, so bytes read from
  the kernel stay buffered for the next ``receive``. A ``send`` is cancelled
  only before its first byte left, or while it waits for the kernel to take
  the rest (as trio's ``send_all``).
- Waiters are plain futures, woken only when not done: a cancelled wait
  never makes asyncio report ``InvalidStateError``.
- Every write of ours passes ``MSG_NOSIGNAL``: a vanished peer is an error,
  never a SIGPIPE.
- Checkpoints: an operation that waits yields in its wait. One that does not
  (the bytes were buffered, the kernel took them) costs :data:`OP_COST` plus
  its bytes from the stream's :data:`BUDGET` and yields, before anything
  moves, when that is spent: once per 16 small operations or per 64 KiB
  (tokio's cooperative budget, per stream). Ping-pong never pays for a
  yield, and a loop that never waits still lets other tasks (and its own
  cancellation) in.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import types
from collections import deque
from collections.abc import Callable, Generator, Mapping
from typing import Any

import anyio
import anyio.abc

from .._endpoints import StreamEndpoint
from .._io import FaceHooks, shut_write
from ._backend import Backend, socket_attributes

# Stop reading above this many buffered bytes, start again at LOW_WATER:
# memory per stream stays under HIGH_WATER + READ_SIZE whatever the peer sends.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
READ_SIZE = 64 * 1024
# An operation that did not wait costs OP_COST plus its bytes; one yields
# when a stream has spent BUDGET so (16 small operations, or 64 KiB).
BUDGET = 64 * 1024
OP_COST = BUDGET // 16
# A chunk this big means bulk flow: receive asks the kernel before it waits.
STREAMING = 16 * 1024
_AF_UNIX = getattr(socket, "AF_UNIX", None)
_LINGER_RESET = struct.pack("ii", 1, 0)


@types.coroutine
def yield_now() -> Generator[None, None, None]:
    """One loop turn for the other tasks: anyio's checkpoint on asyncio.

    ``asyncio.sleep(0)`` is this bare yield inside one more coroutine; on
    the hot paths that coroutine is a fifth of the cost of a yield.
    """
    yield


class ReadAheadBuffer(FaceHooks):
    """The buffer, ``receive`` and the state both engines share.

    An engine supplies ``_start_reading``/``_stop_reading`` and calls
    :meth:`_received` (bytes, or ``b""`` at end of file) and :meth:`_failed`
    from the loop.
    """

    def __init__(self, endpoint: StreamEndpoint, backend: Backend) -> None:
        sock = endpoint.sock
        assert sock is not None
        self._init_buffer(endpoint, backend)
        self._sock = sock
        self._fd = sock.fileno()

    def _init_buffer(self, endpoint: StreamEndpoint, backend: Backend) -> None:
        """The state of every engine's stream (the socket's is __init__'s)."""
        self.url = endpoint.url
        self._on_close = endpoint.on_close
        self._closed = False
        self._bind(backend)
        self._conflicts(backend, "sending to", "receiving from")
        self._loop = asyncio.get_running_loop()
        self._budget = BUDGET
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
        # Reading ahead starts with the first receive: until then what the
        # peer sent stays in the kernel, so closing a stream nobody read from
        # is what it is without us (the AF_UNIX peer's next read fails with
        # ECONNRESET, which only unread bytes in the kernel make happen).
        self._reading = False
        self._streaming = False

    def _start_reading(self) -> None:
        raise AssertionError("an engine's")  # pragma: no cover

    def _stop_reading(self) -> None:
        raise AssertionError("an engine's")  # pragma: no cover

    # -- the loop's side -------------------------------------------------------

    def _received(self, data: bytes) -> None:
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

    def _failed(self, exc: OSError) -> None:
        self._error = exc
        self._stop_reading()
        self._wake()

    def _wake(self) -> None:
        for waiter in (self._receiver, self._sender):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # -- sending: the wait for room (the engines send) -----------------------

    def _writable(self) -> None:
        waiter = self._sender
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _until_writable(self, fd: int) -> None:
        """Wait until the loop finds *fd* writable; registered only meanwhile."""
        self._budget = BUDGET
        self._sender = waiter = self._loop.create_future()
        self._loop.add_writer(fd, self._writable)
        try:
            await waiter
        finally:
            self._sender = None
            if not self._closed:
                self._loop.remove_writer(fd)
        if self._closed:
            raise self._closed_error()

    # -- receiving -------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        # The conflict check inline (see ConflictDetector): the hottest call.
        conflict = self._receive_conflict
        if conflict.held:
            raise conflict.busy()
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        conflict.held = True
        try:
            if self._chunks and not self._closed:
                self._budget -= OP_COST + min(max_bytes, len(self._chunks[0]))
                if self._budget <= 0:
                    self._budget = BUDGET
                    await yield_now()
            elif self._streaming and not self._closed:
                # Bulk flow (the engine saw big chunks and stopped its reader):
                # let the sender run (one yield, as anyio's streams do every
                # time), then ask the kernel, which most likely holds more by
                # then; only if it does not, wait for the reader callback.
                await yield_now()
                if not self._chunks:
                    data = self._read_now(max_bytes)  # the caller's size
                    if data is not None:
                        return data
                if not self._chunks:
                    await self._wait_for_data()
            else:
                await self._wait_for_data()
            return self._take(max_bytes)
        finally:
            conflict.held = False

    def _read_now(self, size: int) -> bytes | None:
        """An engine's read of up to *size* bytes in the caller's task: the
        bytes, when they may go straight out, or None (then in the buffer,
        if any came)."""
        return None

    async def _wait_for_data(self) -> None:
        if not (self._reading or self._eof or self._error or self._closed):
            self._start_reading()
        self._budget = BUDGET
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
        if self._buffered <= LOW_WATER and not (
            self._reading or self._streaming or self._eof or self._error
        ):
            self._start_reading()  # (in bulk flow, the next receive reads)
        return data

    def _drop_passed_fds(self) -> None:
        # receive() took the bytes some descriptors came with: like recv(),
        # which has no room for them, it closes them.
        marks = self._fd_marks
        while marks and marks[0][0] < self._taken_total:
            for fd in marks.popleft()[1]:
                close_fd(fd)

    async def send_eof(self) -> None:
        with self._send_conflict:
            await yield_now()
            if self._closed:
                raise self._closed_error()
            if self._did_shutdown:
                return
            self._did_shutdown = True
            shut_write(self._sock, self._broken)

    def _close_buffer(self) -> None:
        """aclose's first half: closed, waiters woken, the buffer dropped."""
        self._closed = True
        if self._buffered:
            self._closing_with_unread_bytes()
        self._wake()  # a waiting task raises ClosedResourceError
        self._chunks.clear()
        self._buffered = 0
        while self._fd_marks:
            for fd in self._fd_marks.popleft()[1]:
                close_fd(fd)

    def _closing_with_unread_bytes(self) -> None:
        # Bytes the peer sent that nobody received: the kernel resets a TCP
        # connection closed with unread data; so do we for the bytes we read
        # ahead (SO_LINGER 0: an RST, not a FIN). AF_UNIX has no such thing.
        if self._sock.family == _AF_UNIX:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return socket_attributes(self._sock, self.url)


def close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass

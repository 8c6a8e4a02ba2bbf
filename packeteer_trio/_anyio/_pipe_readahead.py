"""The anyio face's pipes on asyncio loops: read ahead, write direct.

``anon://``, ``fifo://``, the unnamed ``local://`` and ``fd://`` pipes, on a
loop with ``add_reader`` (the POSIX selector loop, uvloop). The buffer,
``receive`` and the checkpoint budget are :mod:`._readahead`'s, shared with
the socket streams; this module is their engine on one or two pipe
descriptors: a reader callback calling ``os.read`` whenever the loop sees
the read end readable (while the buffer is under its high-water mark), and
a ``send`` calling ``os.write`` straight away, which waits (one
``add_writer`` per wait) only while the pipe is full.

Checkpoints and cancellation are the socket streams' (see
:mod:`._readahead`): an operation that did not wait yields once its
stream's budget (:data:`._readahead.BUDGET`, :data:`._readahead.OP_COST`)
is spent, before anything moves; bytes read from the pipe stay buffered
for the next ``receive``; a ``send`` is cancelled only before its first
byte left, or while it waits for the pipe to take the rest. A ``send``
that finds the pipe full yields once and tries again before it waits.

Why this engine, measured (``python -m benchmarks anyio_pipes``; the
"anyio pipes on asyncio and uvloop" section of ``benchmarks/README.md``):
the lean loops of :mod:`.._fdio` on anyio's waits pay ``add_reader`` +
``remove_reader`` + a future on every wait, which is every receive of a
round trip; this engine does 4.3-4.8x their round trips and 1.8-2.0x their
bulk, on asyncio and uvloop. The read side on ``connect_read_pipe``'s
transport instead (``data_received`` into the same buffer, tried in a
scratch engine) was 5 % faster on uvloop round trips but 20 % slower in
bulk there, and 35 % slower in bulk on asyncio; and a transport owns the
descriptor (uvloop closes it itself) and sets ``O_NONBLOCK`` on it. Bulk
flow goes past the callback, as for sockets: once chunks come big,
``receive`` reads in the caller's task.

Kept from :class:`._stream.PipeStream`: a one-way end raises
ClosedResourceError on its missing side; ``send_eof`` closes the write end;
a vanished reader is BrokenResourceError (``EPIPE``: Python ignores
SIGPIPE); a FIFO's first zero-byte read is not taken for end of file until
the loop sees it again (before a writer came, a FIFO reads 0 bytes but never
polls readable on Linux; see :mod:`.._fdio`); descriptor modes are left
alone; each descriptor is closed exactly once, after the loop forgot it.
Only FIFOs and sockets come here: a regular file or a character device
(``/dev/null``, a terminal) keeps the lean loops (epoll refuses files).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Mapping
from typing import Any, final

from .._endpoints import StreamEndpoint
from .._io import FIRST_PAUSE, SHORT_OF_MEMORY, FdHolder
from ._abc import Stream
from ._backend import Backend, PacketeerAttribute
from ._readahead import (
    BUDGET,
    OP_COST,
    READ_SIZE,
    STREAMING,
    ReadAheadBuffer,
    yield_now,
)

_BYTES_TYPES = (bytes, bytearray)


def suits(endpoint: StreamEndpoint) -> bool:
    """Whether the endpoint's descriptors can be watched by ``add_reader``
    and ``add_writer``: POSIX pipes, FIFOs and sockets."""
    if sys.platform == "win32":
        return False
    for fd in (endpoint.read_fd, endpoint.write_fd):
        if fd is not None:
            mode = os.fstat(fd).st_mode
            if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
                return False
    return True


@final
class ReadAheadPipeStream(ReadAheadBuffer, Stream):
    """A byte stream over one or two pipe descriptors, read ahead by the loop.

    A one-way end (a FIFO's reader or writer) behaves on its missing side
    like a stream that was already half-closed: sending (or receiving)
    raises ClosedResourceError.
    """

    def __init__(self, endpoint: StreamEndpoint, backend: Backend) -> None:
        self._init_buffer(endpoint, backend)  # _fd_marks stays empty: no fds
        read_fd, write_fd = endpoint.read_fd, endpoint.write_fd
        self._reader = None if read_fd is None else FdHolder(read_fd)
        self._writer = None if write_fd is None else FdHolder(write_fd)
        self._read_fd = -1 if read_fd is None else read_fd
        self._eof_needs_hangup = endpoint.eof_needs_hangup
        self._saw_zero = False

    def _closing_with_unread_bytes(self) -> None:
        pass  # a pipe's reader going away tells the writer nothing more

    def _one_way_error(self, side: str) -> Exception:
        if self._closed:
            return self._closed_error()
        return self._closed_exception(f"{self.url}: this end has no {side} side")

    @property
    def can_send(self) -> bool:
        return self._writer is not None and not self._writer.closed

    @property
    def can_receive(self) -> bool:
        return self._reader is not None and not self._reader.closed

    # -- the loop's side -------------------------------------------------------

    def _start_reading(self) -> None:
        if self._reader is None:
            # A write-only end: every receive comes to wait for data, and
            # raises here, as the half-closed stream it is on this side.
            raise self._one_way_error("receiving")
        self._reading = True
        self._loop.add_reader(self._read_fd, self._readable)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._read_fd)

    def _readable(self) -> None:
        # A full read says more is waiting: read on (up to the high-water
        # mark) in this one callback, rather than one read per loop turn.
        while True:
            try:
                data = os.read(self._read_fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno not in SHORT_OF_MEMORY:  # else readable: called again
                    self._failed(exc)
                return
            if not data and self._eof_needs_hangup and not self._saw_zero:
                # A FIFO reads 0 bytes while no writer has it open: end of
                # file only if the loop still finds it readable next turn
                # (hung up after a writer came and went), as _fdio does.
                self._saw_zero = True
                return
            self._saw_zero = False
            self._received(data)
            # Big chunks mean bulk flow: then receive reads directly, which
            # costs less than a callback per chunk.
            self._streaming = len(data) >= STREAMING
            if self._streaming:
                self._stop_reading()
            if len(data) < READ_SIZE or not self._reading:
                return

    def _read_now(self, size: int) -> bytes | None:
        try:
            data = os.read(self._read_fd, size)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno not in SHORT_OF_MEMORY:
                self._failed(exc)
            return None
        if not data:
            if not self._eof_needs_hangup:  # (a FIFO's: the callback decides)
                self._received(data)
            return None
        self._streaming = len(data) >= STREAMING
        if self._streaming:
            # Bulk flow goes past the buffer (it is empty: order is kept).
            self._read_total += len(data)
            self._taken_total += len(data)
            return data
        self._received(data)
        return None

    # -- sending ---------------------------------------------------------------

    async def send(self, item: bytes) -> None:
        conflict = self._send_conflict  # inline: see ConflictDetector
        if conflict.held:
            raise conflict.busy()
        conflict.held = True
        try:
            # The schedule point, before anything moves.
            self._budget -= OP_COST + len(item)
            if self._budget <= 0:
                self._budget = BUDGET
                await yield_now()
            writer = self._writer
            if writer is None or writer.closed:  # (closed by send_eof, aclose)
                raise self._one_way_error("sending")
            data: Any = item
            if not isinstance(data, _BYTES_TYPES):
                data = memoryview(data).cast("B")
            try:
                sent = os.write(writer.fd, data) if data else 0
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                if exc.errno not in SHORT_OF_MEMORY:
                    raise self._broken(exc) from exc
                sent = 0
            if sent < len(data):
                await self._send_rest(writer.fd, data, sent)
        finally:
            conflict.held = False

    async def _send_rest(self, fd: int, data: Any, sent: int) -> None:
        with memoryview(data) as view:
            # The pipe is full: first let the reader run (one yield) and try
            # again; wait for the loop only if that did not help. A pipe holds
            # one 64 KiB write, and without this a bulk writer and its reader
            # fall into step, each finding the pipe full (or empty) and
            # waiting on the loop every time: half the speed.
            self._budget = BUDGET
            await yield_now()
            if self._closed:  # by another task: *fd* may be someone else's now
                raise self._closed_error()
            pause = FIRST_PAUSE
            while True:
                try:
                    sent += os.write(fd, view[sent:])
                except BlockingIOError:
                    pass
                except OSError as exc:
                    pause = await self._pause_for_memory(exc, pause)
                    continue
                if sent >= len(view):
                    return
                await self._until_writable(fd)

    async def send_eof(self) -> None:
        with self._send_conflict:
            await yield_now()
            if self._closed:
                raise self._closed_error()
            writer = self._writer
            if writer is not None:
                writer.close()  # idempotent; no wait holds it (send_conflict)

    async def aclose(self) -> None:
        if not self._closed:
            # The loop forgets a descriptor before it is closed: epoll would
            # keep watching a closed number whose file lives on in a copy.
            self._stop_reading()
            if self._sender is not None and self._writer is not None:
                self._loop.remove_writer(self._writer.fd)
            self._close_buffer()  # closed, waiters woken, the buffer dropped
            try:
                for holder in (self._reader, self._writer):
                    if holder is not None:
                        holder.close()
            finally:
                self._run_on_close()
        await yield_now()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {PacketeerAttribute.url: lambda: self.url}

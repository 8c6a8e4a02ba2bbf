"""The byte-moving loops both faces share: sockets and pipes.

The trio face (:mod:`._stream`) and the anyio face (:mod:`._anyio._stream`)
differ only in how they wait and which resource errors they raise, so the
hot paths live here once, as mixins. A face provides, per instance:

- the waits and checkpoints (``_wait_readable``, ``_wait_writable``,
  ``_checkpoint``, ``_checkpoint_if_cancelled``,
  ``_cancel_shielded_checkpoint``, ``_notify_closing``);
- its errors (``_closed_error()``, ``_broken(exc)``, and for pipes
  ``_one_way_error(side)``) and its conflict detectors.

Every loop keeps trio's sandwich: check for cancellation, try the syscall,
and only on EAGAIN wait (that wait is the schedule point); if we never
waited, end with a cancel-shielded checkpoint. ``Cancelled`` can therefore
only arrive *before* bytes leave or enter the kernel: no silent data loss.
The waits are bound per instance and called directly: a generic helper
layer per call would cost more than the syscall on small messages.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from ._endpoints import StreamEndpoint
from ._io import ConflictDetector, FdHolder, SocketAccess

DEFAULT_RECEIVE_SIZE = 65536
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_BYTES_TYPES = (bytes, bytearray)
Data = bytes | bytearray | memoryview


def max_bytes_or_default(max_bytes: int | None) -> int:
    if max_bytes is None:
        return DEFAULT_RECEIVE_SIZE
    if max_bytes < 1:
        raise ValueError("max_bytes must be >= 1")
    return max_bytes


WaitFd = Callable[[int], Awaitable[None]]
Checkpoint = Callable[[], Awaitable[None]]

# A send or receive the kernel refused for lack of memory did nothing, and
# memory comes back: like a blocking call, which would sleep in the kernel
# until then, the loops pause (1 ms, doubling up to 100 ms) and try again.
SHORT_OF_MEMORY = frozenset({errno.ENOMEM, errno.ENOBUFS})
FIRST_PAUSE = 0.001
MAX_PAUSE = 0.1


@dataclasses.dataclass(frozen=True)
class Waits:
    """One face's (or one anyio backend's) primitives, bound into each object.

    ``closed_exception`` is what its waits raise when the descriptor is
    closed under them (after ``notify_closing``).
    """

    checkpoint: Checkpoint
    checkpoint_if_cancelled: Checkpoint
    cancel_shielded_checkpoint: Checkpoint
    wait_readable: WaitFd
    wait_writable: WaitFd
    notify_closing: Callable[[int], None]
    sleep: Callable[[float], Awaitable[None]]
    closed_exception: type[Exception]


class FaceHooks:
    """What a face binds for the loops below (declared here for the types)."""

    _closed: bool
    _on_close: Callable[[], None] | None
    _send_conflict: ConflictDetector
    _receive_conflict: ConflictDetector
    _wait_readable: Callable[[int], Awaitable[None]]
    _wait_writable: Callable[[int], Awaitable[None]]
    _checkpoint: Callable[[], Awaitable[None]]
    _checkpoint_if_cancelled: Callable[[], Awaitable[None]]
    _cancel_shielded_checkpoint: Callable[[], Awaitable[None]]
    _notify_closing: Callable[[int], None]
    _sleep: Callable[[float], Awaitable[None]]
    _closed_exception: type[Exception]

    def _bind(self, waits: Waits) -> None:
        # Bound once per object: the loops call these directly, and an
        # attribute load is all a call costs beyond the primitive itself.
        self._checkpoint = waits.checkpoint
        self._checkpoint_if_cancelled = waits.checkpoint_if_cancelled
        self._cancel_shielded_checkpoint = waits.cancel_shielded_checkpoint
        self._wait_readable = waits.wait_readable
        self._wait_writable = waits.wait_writable
        self._notify_closing = waits.notify_closing
        self._sleep = waits.sleep
        self._closed_exception = waits.closed_exception

    def _closed_error(self) -> Exception:  # pragma: no cover - each face's own
        raise NotImplementedError

    def _broken(self, exc: OSError) -> Exception:  # pragma: no cover
        raise NotImplementedError

    async def _pause_for_memory(self, exc: OSError, pause: float) -> float:
        """After ENOMEM/ENOBUFS, sleep *pause* and return the next one; any
        other error is raised as the face's broken (or closed) error."""
        if exc.errno not in SHORT_OF_MEMORY or self._closed:
            raise self._broken(exc) from exc
        await self._sleep(pause)
        if self._closed:  # closed while we slept: the fd number is not ours
            raise self._closed_error()
        return min(pause * 2, MAX_PAUSE)

    def _run_on_close(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


class SocketIO(SocketAccess, FaceHooks):
    """send_all / receive_some / send_eof / close over a connected socket."""

    def _init_socket(self, endpoint: StreamEndpoint) -> None:
        assert endpoint.sock is not None
        self._sock = endpoint.sock
        self._fd = self._sock.fileno()
        self._did_shutdown = False

    async def send_all(self, data: Data) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed or self._did_shutdown:
                raise self._closed_error()
            if not isinstance(data, _BYTES_TYPES):
                data = memoryview(data).cast("B")
            try:
                sent = self._sock.send(data, _NOSIGNAL)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                if exc.errno not in SHORT_OF_MEMORY:
                    raise self._broken(exc) from exc
                sent = 0  # the slow path pauses and retries
            if sent < len(data):
                await self._send_rest(data, sent)
            else:
                await self._cancel_shielded_checkpoint()

    async def _send_rest(self, data: Data, sent: int) -> None:
        # The slow path: the socket buffer is full. Waiting for writability is
        # the schedule point, so this always yields at least once.
        with memoryview(data) as view:
            total, pause = len(view), FIRST_PAUSE
            while True:
                await self._wait_writable(self._fd)
                try:
                    sent += self._sock.send(view[sent:], _NOSIGNAL)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    pause = await self._pause_for_memory(exc, pause)
                    continue
                if sent >= total:
                    return

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            if self._closed:
                raise self._closed_error()
            await self._wait_writable(self._fd)

    async def send_eof(self) -> None:
        with self._send_conflict:
            await self._checkpoint()
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

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            size = max_bytes_or_default(max_bytes)
            if self._closed:
                raise self._closed_error()
            waited, pause = False, FIRST_PAUSE
            while True:
                try:
                    data = self._sock.recv(size)
                    break
                except BlockingIOError:
                    await self._wait_readable(self._fd)
                    waited = True
                except OSError as exc:
                    pause = await self._pause_for_memory(exc, pause)
                    waited = True
            if not waited:
                await self._cancel_shielded_checkpoint()
            return data

    async def receive_into(self, buffer: Any) -> int:
        """Receive into *buffer* (a writable bytes-like); 0 means end of file."""
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            waited, pause = False, FIRST_PAUSE
            while True:
                try:
                    count = self._sock.recv_into(buffer)
                    break
                except BlockingIOError:
                    await self._wait_readable(self._fd)
                    waited = True
                except OSError as exc:
                    pause = await self._pause_for_memory(exc, pause)
                    waited = True
            if not waited:
                await self._cancel_shielded_checkpoint()
            return count

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._notify_closing(self._fd)
            self._sock.close()
            self._run_on_close()
        await self._checkpoint()


class PipeIO(FaceHooks):
    """The same over one or two pipe descriptors (anon, fifo, unnamed local).

    A one-way end (a FIFO's reader or writer) behaves on its missing side
    like a stream that was already half-closed.
    """

    def _init_pipe(self, endpoint: StreamEndpoint) -> None:
        read_fd, write_fd = endpoint.read_fd, endpoint.write_fd
        self._reader = None if read_fd is None else FdHolder(read_fd)
        self._writer = None if write_fd is None else FdHolder(write_fd)
        self._eof_needs_hangup = endpoint.eof_needs_hangup

    def _one_way_error(self, side: str) -> Exception:  # pragma: no cover
        raise NotImplementedError

    @property
    def can_send(self) -> bool:
        return self._writer is not None and not self._writer.closed

    @property
    def can_receive(self) -> bool:
        return self._reader is not None and not self._reader.closed

    async def send_all(self, data: Data) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            writer = self._writer
            if writer is None or writer.closed:
                raise self._one_way_error("sending")
            if not isinstance(data, _BYTES_TYPES):
                data = memoryview(data).cast("B")
            try:
                sent = os.write(writer.fd, data) if data else 0
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                if exc.errno not in SHORT_OF_MEMORY:
                    raise self._broken(exc) from exc
                sent = 0  # the slow path pauses and retries
            if sent < len(data):
                await self._send_rest(writer, data, sent)
            else:
                await self._cancel_shielded_checkpoint()

    async def _send_rest(self, writer: FdHolder, data: Data, sent: int) -> None:
        with memoryview(data) as view:
            total, pause = len(view), FIRST_PAUSE
            while True:
                await self._wait_writable(writer.fd)
                try:
                    sent += os.write(writer.fd, view[sent:])
                except BlockingIOError:
                    continue
                except OSError as exc:
                    pause = await self._pause_for_memory(exc, pause)
                    continue
                if sent >= total:
                    break
        # The pipe is full again now: let the reader drain it before our next
        # write meets EAGAIN (a wait per write cost ~25% of bulk throughput).
        await self._cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            writer = self._writer
            if writer is None or writer.closed:
                raise self._one_way_error("sending")
            await self._wait_writable(writer.fd)

    async def send_eof(self) -> None:
        with self._send_conflict:
            await self._checkpoint()
            if self._closed:
                raise self._closed_error()
            writer = self._writer
            if writer is not None and not writer.closed:
                self._notify_closing(writer.fd)
                writer.close()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            size = max_bytes_or_default(max_bytes)
            reader = self._reader
            if reader is None or reader.closed:
                raise self._one_way_error("receiving")
            fd, waited, saw_zero, pause = reader.fd, False, False, FIRST_PAUSE
            while True:
                try:
                    data = os.read(fd, size)
                except BlockingIOError:
                    await self._wait_readable(fd)
                    waited = True
                    continue
                except OSError as exc:
                    pause = await self._pause_for_memory(exc, pause)
                    waited = True
                    continue
                if not data and self._eof_needs_hangup and not saw_zero:
                    # A FIFO reads 0 bytes while no writer has the FIFO open,
                    # including before the first one arrives. It only polls as
                    # hung up once a writer came and went: wait for that (or
                    # for data) and read again; 0 then really is end of file.
                    saw_zero = True
                    await self._wait_readable(fd)
                    waited = True
                    continue
                break
            # A full read after a wait means bulk data: let the writer refill
            # the pipe before our next read meets EAGAIN.
            if not waited or len(data) == size:
                await self._cancel_shielded_checkpoint()
            return data

    async def receive_into(self, buffer: Any) -> int:
        """Receive into *buffer* (a writable bytes-like); 0 means end of file."""
        # Pipes gain little from readv over read: keep one careful path.
        with memoryview(buffer) as view, view.cast("B") as target:
            data = await self.receive_some(len(target))
            target[: len(data)] = data
        return len(data)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            for holder in (self._reader, self._writer):
                if holder is not None and not holder.closed:
                    self._notify_closing(holder.fd)
                    holder.close()
            self._run_on_close()
        await self._checkpoint()

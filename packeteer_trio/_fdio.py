"""The byte-moving loops both faces share: sockets, pipes, and accepting.

The trio face (:mod:`._trio._stream`) and the anyio face
(:mod:`._anyio._stream`) differ only in how they wait and which resource
errors they raise, so the hot paths live here once, as mixins: a face class
binds its :class:`._io.Face` (waits, checkpoints, exception classes) and its
conflict detectors, and inherits the loops. Mixins rather than a held loop
object: a delegating method per call is a second coroutine per
``send_all``/``receive_some``, which costs more than the syscall on small
messages.

Every loop keeps trio's sandwich: check for cancellation, try the syscall,
and only on EAGAIN wait (that wait is the schedule point); if we never
waited, end with a cancel-shielded checkpoint. ``Cancelled`` can therefore
only arrive *before* bytes leave or enter the kernel: no silent data loss.
The waits are bound per instance and called directly: a generic helper
layer per call would cost more than the syscall on small messages.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from ._buffer import Buffer
from ._endpoints import ListenerEndpoint, StreamEndpoint
from ._errors import PacketeerError
from ._io import (
    FIRST_PAUSE,
    MAX_PAUSE,
    SHORT_OF_MEMORY,
    Checkpoint,
    ConflictDetector,
    Face,
    FaceHooks,
    FdHolder,
    SocketEnd,
    WaitFd,
)
from ._url import URL

__all__ = [
    "DEFAULT_RECEIVE_SIZE",
    "FIRST_PAUSE",
    "MAX_PAUSE",
    "SHORT_OF_MEMORY",
    "ListenerIO",
    "PipeIO",
    "SocketIO",
    "max_bytes_or_default",
]

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


class SocketIO(SocketEnd):
    """send_all / receive_some over a connected socket (send_eof, close: SocketEnd)."""

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

    async def receive_into(self, buffer: Buffer) -> int:
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

    async def receive_into(self, buffer: Buffer) -> int:
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


class ListenerIO:
    """accept / aclose / fileno over a listener endpoint, for both faces.

    A face binds its waits (:meth:`._io.FaceHooks._bind`) and a conflict
    detector, then wraps what :meth:`_accept_endpoint` returns in its own
    stream class.
    """

    url: URL
    _endpoint: ListenerEndpoint
    _closed: bool
    _released: bool
    _conflict: ConflictDetector
    _checkpoint: Checkpoint
    _checkpoint_if_cancelled: Checkpoint
    _cancel_shielded_checkpoint: Checkpoint
    _wait_readable: WaitFd
    _notify_closing: Callable[[int], None]
    _closed_exception: type[Exception]

    def _init_listener(self, endpoint: ListenerEndpoint, face: Face, busy: str) -> None:
        self._endpoint = endpoint
        self.url = endpoint.url
        self._closed = False
        self._released = False  # the endpoint closed (after detach() too)
        self._conflict = ConflictDetector(busy, face.busy_exception)
        self._checkpoint = face.checkpoint
        self._checkpoint_if_cancelled = face.checkpoint_if_cancelled
        self._cancel_shielded_checkpoint = face.cancel_shielded_checkpoint
        self._wait_readable = face.wait_readable
        self._notify_closing = face.notify_closing
        self._closed_exception = face.closed_exception

    def _closed_error(self) -> Exception:
        return self._closed_exception(f"{self.url}: listener was closed")

    async def _accept_endpoint(self) -> tuple[StreamEndpoint, bool]:
        """The next connection, and whether we waited for it (a schedule
        point: if not, the caller ends with a cancel-shielded checkpoint,
        after it owns the connection). Call it under ``self._conflict``."""
        await self._checkpoint_if_cancelled()
        waited = False
        while True:
            if self._closed:
                raise self._closed_error()
            endpoint = self._endpoint.try_accept()
            if endpoint is not None:
                return endpoint, waited
            await self._endpoint.wait_acceptable(self._wait_readable)
            waited = True

    async def aclose(self) -> None:
        if not self._released:
            self._released = self._closed = True
            for fd in self._endpoint.fds():
                self._notify_closing(fd)
            # After detach() this closes no descriptor, only removes what the
            # listener still owns on disk (a local:// socket file, if ours).
            self._endpoint.close()
        await self._checkpoint()

    def detach(self) -> list[socket.socket]:
        """Hand the listening sockets over; the listener is closed for accepting."""
        if self._closed:
            raise self._closed_error()
        socks = self._endpoint.detach()  # raises, leaving us open, if it has none
        self._closed = True
        for sock in socks:
            # Tasks in accept() wake with the closed error, and the event loop
            # forgets the fd: its next owner registers it afresh.
            self._notify_closing(sock.fileno())
        return socks

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (empty for a FIFO)."""
        return self._endpoint.sockets()

    def fileno(self) -> int:
        """The (first) listening descriptor."""
        fds = self._endpoint.fds()
        if not fds:
            raise PacketeerError(f"{self.url}: listener has no descriptor")
        return fds[0]

    def __repr__(self) -> str:
        return f"<Listener {self.url}{' closed' if self._closed else ''}>"

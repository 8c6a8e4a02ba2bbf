"""The trio face of byte streams: Stream, SocketStream, PipeStream, Listener.

The hot paths keep trio's sandwich, written out inline on purpose: check for
cancellation, try the syscall, and only on EAGAIN wait (that wait is the
schedule point); if we never waited, finish with a cancel-shielded checkpoint
so every call is a full checkpoint. ``Cancelled`` can therefore only arrive
*before* bytes leave or enter the kernel, never after: no silent data loss.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    notify_closing,
    wait_readable,
    wait_writable,
)

from . import _sockinfo
from ._endpoints import ListenerEndpoint, StreamEndpoint
from ._errors import PacketeerError
from ._io import ConflictDetector, FdHolder
from ._url import URL

DEFAULT_RECEIVE_SIZE = 65536
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_BYTES_TYPES = (bytes, bytearray)


def _max_bytes(max_bytes: int | None) -> int:
    if max_bytes is None:
        return DEFAULT_RECEIVE_SIZE
    if max_bytes < 1:
        raise ValueError("max_bytes must be >= 1")
    return max_bytes


class Stream(trio.abc.HalfCloseableStream):
    """A byte stream opened by :func:`connect` or accepted by a :class:`Listener`.

    ``url`` is the address it was opened with, narrowed and resolved
    (``tcp://localhost:80`` becomes ``tcp4://127.0.0.1:80``).
    """

    url: URL

    def __init__(self, url: URL) -> None:
        self.url = url
        self._closed = False
        self._send_conflict = ConflictDetector(
            f"{url}: another task is already sending on this stream",
            trio.BusyResourceError,
        )
        self._receive_conflict = ConflictDetector(
            f"{url}: another task is already receiving from this stream",
            trio.BusyResourceError,
        )

    async def receive_into(self, buffer: Any) -> int:  # pragma: no cover
        """Receive into *buffer* (a writable bytes-like); 0 means end of file."""
        raise NotImplementedError

    def fileno(self) -> int:  # pragma: no cover
        raise NotImplementedError

    @property
    def local_address(self) -> URL:  # pragma: no cover
        raise NotImplementedError

    @property
    def peer_address(self) -> URL:  # pragma: no cover
        raise NotImplementedError

    def _scheduler_fds(self) -> tuple[int | None, int | None]:  # pragma: no cover
        raise NotImplementedError

    def _closed_error(self) -> trio.ClosedResourceError:
        return trio.ClosedResourceError(f"{self.url}: this stream was closed")

    def _broken(
        self, exc: OSError
    ) -> trio.ClosedResourceError | trio.BrokenResourceError:
        if self._closed or exc.errno == errno.EBADF:
            return self._closed_error()
        return trio.BrokenResourceError(f"{self.url}: {exc.strerror or exc}")

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {self.url}{state}>"


class SocketStream(Stream):
    """A stream over a connected socket (tcp, tcp4, tcp6, local)."""

    def __init__(self, endpoint: StreamEndpoint) -> None:
        assert endpoint.sock is not None
        super().__init__(endpoint.url)
        self._sock = endpoint.sock
        self._fd = self._sock.fileno()
        self._on_close = endpoint.on_close
        self._did_shutdown = False

    @property
    def socket(self) -> socket.socket:
        """The underlying (non-blocking) socket. Don't close it behind our back."""
        return self._sock

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_conflict:
            await checkpoint_if_cancelled()
            if self._closed or self._did_shutdown:
                raise self._closed_error()
            if not isinstance(data, _BYTES_TYPES):
                data = memoryview(data).cast("B")
            try:
                sent = self._sock.send(data, _NOSIGNAL)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise self._broken(exc) from exc
            if sent < len(data):
                await self._send_rest(data, sent)
            else:
                await cancel_shielded_checkpoint()

    async def _send_rest(self, data: bytes | bytearray | memoryview, sent: int) -> None:
        # The slow path: the socket buffer is full. Waiting for writability is
        # the schedule point, so this always yields at least once.
        with memoryview(data) as view:
            total = len(view)
            while True:
                await wait_writable(self._fd)
                try:
                    sent += self._sock.send(view[sent:], _NOSIGNAL)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise self._broken(exc) from exc
                if sent >= total:
                    return

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            if self._closed:
                raise self._closed_error()
            await wait_writable(self._fd)

    async def send_eof(self) -> None:
        with self._send_conflict:
            await checkpoint()
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
            await checkpoint_if_cancelled()
            size = _max_bytes(max_bytes)
            if self._closed:
                raise self._closed_error()
            waited = False
            while True:
                try:
                    data = self._sock.recv(size)
                    break
                except BlockingIOError:
                    await wait_readable(self._fd)
                    waited = True
                except OSError as exc:
                    raise self._broken(exc) from exc
            if not waited:
                await cancel_shielded_checkpoint()
            return data

    async def receive_into(self, buffer: Any) -> int:
        with self._receive_conflict:
            await checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            waited = False
            while True:
                try:
                    count = self._sock.recv_into(buffer)
                    break
                except BlockingIOError:
                    await wait_readable(self._fd)
                    waited = True
                except OSError as exc:
                    raise self._broken(exc) from exc
            if not waited:
                await cancel_shielded_checkpoint()
            return count

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            notify_closing(self._sock)
            self._sock.close()
            if self._on_close is not None:
                self._on_close()
        await checkpoint()

    def fileno(self) -> int:
        return self._sock.fileno()

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._sock.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        if buflen:
            return self._sock.getsockopt(level, option, buflen)
        return self._sock.getsockopt(level, option)

    @property
    def local_address(self) -> URL:
        return _sockinfo.socket_url(self._sock, peer=False)

    @property
    def peer_address(self) -> URL:
        return _sockinfo.socket_url(self._sock, peer=True)

    def peer_credentials(self) -> tuple[int, int, int]:
        """``(pid, uid, gid)`` of the peer process (local:// only)."""
        return _sockinfo.peer_credentials(self._sock, self.url)

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._closed:
            raise self._closed_error()
        return self._fd, self._fd


class PipeStream(Stream):
    """A stream over one or two pipe descriptors (anon, fifo, unnamed local).

    A one-way end (a FIFO's reader or writer) behaves on its missing side like
    a stream that was already half-closed: sending raises ClosedResourceError.
    """

    def __init__(self, endpoint: StreamEndpoint) -> None:
        super().__init__(endpoint.url)
        self._reader = None if endpoint.read_fd is None else FdHolder(endpoint.read_fd)
        self._writer = (
            None if endpoint.write_fd is None else FdHolder(endpoint.write_fd)
        )
        self._eof_needs_hangup = endpoint.eof_needs_hangup
        self._on_close = endpoint.on_close

    @property
    def can_send(self) -> bool:
        return self._writer is not None and not self._writer.closed

    @property
    def can_receive(self) -> bool:
        return self._reader is not None and not self._reader.closed

    def _one_way_error(self, side: str) -> trio.ClosedResourceError:
        if self._closed:
            return self._closed_error()
        return trio.ClosedResourceError(f"{self.url}: this end has no {side} side")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_conflict:
            await checkpoint_if_cancelled()
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
                raise self._broken(exc) from exc
            if sent < len(data):
                await self._send_rest(writer, data, sent)
            else:
                await cancel_shielded_checkpoint()

    async def _send_rest(
        self, writer: FdHolder, data: bytes | bytearray | memoryview, sent: int
    ) -> None:
        with memoryview(data) as view:
            total = len(view)
            while True:
                await wait_writable(writer.fd)
                try:
                    sent += os.write(writer.fd, view[sent:])
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise self._broken(exc) from exc
                if sent >= total:
                    break
        # The pipe is full again now: let the reader drain it before our next
        # write meets EAGAIN (a wait per write cost ~25% of bulk throughput).
        await cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            writer = self._writer
            if writer is None or writer.closed:
                raise self._one_way_error("sending")
            await wait_writable(writer.fd)

    async def send_eof(self) -> None:
        with self._send_conflict:
            await checkpoint()
            if self._closed:
                raise self._closed_error()
            writer = self._writer
            if writer is not None and not writer.closed:
                notify_closing(writer.fd)
                writer.close()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with self._receive_conflict:
            await checkpoint_if_cancelled()
            size = _max_bytes(max_bytes)
            reader = self._reader
            if reader is None or reader.closed:
                raise self._one_way_error("receiving")
            fd, waited, saw_zero = reader.fd, False, False
            while True:
                try:
                    data = os.read(fd, size)
                except BlockingIOError:
                    await wait_readable(fd)
                    waited = True
                    continue
                except OSError as exc:
                    raise self._broken(exc) from exc
                if not data and self._eof_needs_hangup and not saw_zero:
                    # A FIFO reads 0 bytes while no writer has the FIFO open,
                    # including before the first one arrives. It only polls as
                    # hung up once a writer came and went: wait for that (or
                    # for data) and read again; 0 then really is end of file.
                    saw_zero = True
                    await wait_readable(fd)
                    waited = True
                    continue
                break
            # A full read after a wait means bulk data: let the writer refill
            # the pipe before our next read meets EAGAIN.
            if not waited or len(data) == size:
                await cancel_shielded_checkpoint()
            return data

    async def receive_into(self, buffer: Any) -> int:
        # Pipes gain little from readv over read: keep one careful path.
        data = await self.receive_some(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            for holder in (self._reader, self._writer):
                if holder is not None and not holder.closed:
                    notify_closing(holder.fd)
                    holder.close()
            if self._on_close is not None:
                self._on_close()
        await checkpoint()

    def split(self) -> tuple[PipeStream, PipeStream]:
        """Hand the two directions to two new one-way streams: ``(send, receive)``.

        This stream is closed afterwards and the new ones own the descriptors,
        so one task (or another process) can own each end.
        """
        if self._closed:
            raise self._closed_error()
        send = PipeStream(StreamEndpoint(self.url, write_fd=self._take(self._writer)))
        receive = PipeStream(
            StreamEndpoint(
                self.url,
                read_fd=self._take(self._reader),
                eof_needs_hangup=self._eof_needs_hangup,
                on_close=self._on_close,
            )
        )
        self._closed, self._on_close = True, None
        return send, receive

    @staticmethod
    def _take(holder: FdHolder | None) -> int | None:
        if holder is None or holder.closed:
            return None
        fd, holder.fd = holder.fd, -1
        return fd

    def fileno(self) -> int:
        for holder in (self._reader, self._writer):
            if holder is not None and not holder.closed:
                return holder.fd
        return -1

    @property
    def local_address(self) -> URL:
        return self.url

    @property
    def peer_address(self) -> URL:
        return self.url

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._closed:
            raise self._closed_error()
        return (
            None if self._reader is None or self._reader.closed else self._reader.fd,
            None if self._writer is None or self._writer.closed else self._writer.fd,
        )


def wrap_stream(endpoint: StreamEndpoint) -> Stream:
    """The trio stream for a raw endpoint; takes ownership of its descriptors."""
    if endpoint.sock is not None:
        return SocketStream(endpoint)
    if sys.platform == "win32" and (  # pragma: no cover
        endpoint.read_handle is not None or endpoint.write_handle is not None
    ):
        from ._stream_windows import HandleStream  # Windows pipe HANDLEs

        return HandleStream(endpoint)
    return PipeStream(endpoint)


class Listener(trio.abc.Listener[Stream]):
    """Accepts :class:`Stream` connections; ``url`` is the bound address."""

    def __init__(self, endpoint: ListenerEndpoint) -> None:
        self._endpoint = endpoint
        self.url = endpoint.url
        self._closed = False
        self._conflict = ConflictDetector(
            f"{self.url}: another task is already accepting", trio.BusyResourceError
        )

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (empty for a FIFO)."""
        return list(getattr(self._endpoint, "socks", []))

    async def accept(self) -> Stream:
        with self._conflict:
            await checkpoint_if_cancelled()
            waited = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError(f"{self.url}: listener was closed")
                endpoint = self._endpoint.try_accept()
                if endpoint is not None:
                    break
                await self._endpoint.wait_acceptable(wait_readable)
                waited = True
            stream = wrap_stream(endpoint)
            if not waited:
                await cancel_shielded_checkpoint()
            return stream

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            for fd in self._endpoint.fds():
                notify_closing(fd)
            self._endpoint.close()
        await checkpoint()

    def fileno(self) -> int:
        fds = self._endpoint.fds()
        if not fds:
            raise PacketeerError(f"{self.url}: listener has no descriptor")
        return fds[0]

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._closed:
            raise trio.ClosedResourceError(f"{self.url}: listener was closed")
        fds = self._endpoint.fds()
        return (fds[0] if fds else None), None

    def __repr__(self) -> str:
        return f"<Listener {self.url}{' closed' if self._closed else ''}>"

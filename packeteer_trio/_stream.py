"""The trio face of byte streams: Stream, SocketStream, PipeStream, Listener.

The loops that move bytes live in :mod:`._fdio`, shared with the anyio face;
this module binds trio's waits and checkpoints to them, maps errors to trio's
resource errors, and adds what only trio users see (``split``, addresses,
socket options, the listener).
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Awaitable, Callable
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
from ._fdio import DEFAULT_RECEIVE_SIZE, FaceHooks, PipeIO, SocketIO, Waits
from ._io import ConflictDetector, FdHolder
from ._url import URL
from .scheduler import Events

TRIO_WAITS = Waits(
    checkpoint=checkpoint,
    checkpoint_if_cancelled=checkpoint_if_cancelled,
    cancel_shielded_checkpoint=cancel_shielded_checkpoint,
    wait_readable=wait_readable,
    wait_writable=wait_writable,
    notify_closing=notify_closing,
    sleep=trio.sleep,
    closed_exception=trio.ClosedResourceError,
)

__all__ = ["DEFAULT_RECEIVE_SIZE", "Listener", "PipeStream", "SocketStream", "Stream"]


class Stream(FaceHooks, trio.abc.HalfCloseableStream):
    """A byte stream opened by :func:`connect` or accepted by a :class:`Listener`.

    ``url`` is the address it was opened with, narrowed and resolved
    (``tcp://localhost:80`` becomes ``tcp4://127.0.0.1:80``).
    """

    url: URL

    def __init__(self, url: URL) -> None:
        self.url = url
        self._closed = False
        self._on_close = None
        self._bind(TRIO_WAITS)
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


class SocketStream(SocketIO, Stream):
    """A stream over a connected socket (tcp, tcp4, tcp6, local)."""

    def __init__(self, endpoint: StreamEndpoint) -> None:
        super().__init__(endpoint.url)
        self._init_socket(endpoint)
        self._on_close = endpoint.on_close

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


class PipeStream(PipeIO, Stream):
    """A stream over one or two pipe descriptors (anon, fifo, unnamed local).

    A one-way end (a FIFO's reader or writer) behaves on its missing side like
    a stream that was already half-closed: sending raises ClosedResourceError.
    """

    def __init__(self, endpoint: StreamEndpoint) -> None:
        super().__init__(endpoint.url)
        self._init_pipe(endpoint)
        self._on_close = endpoint.on_close

    def _one_way_error(self, side: str) -> trio.ClosedResourceError:
        if self._closed:
            return self._closed_error()
        return trio.ClosedResourceError(f"{self.url}: this end has no {side} side")

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
        # Without descriptors (a Windows pipe listener) the scheduler waits
        # through _scheduler_wait; it needs only a key for the wait.
        return (fds[0] if fds else id(self._endpoint)), None

    @property
    def _scheduler_wait(self) -> Callable[[bool], Awaitable[int]] | None:
        """The scheduler's wait for a listener without descriptors: the
        endpoint's own (``ConnectNamedPipe`` for Windows pipes); None (trio's
        ``wait_readable``) for every other listener."""
        return None if self._endpoint.fds() else self._wait_acceptable

    async def _wait_acceptable(self, read: bool) -> int:
        if not self._closed:
            await self._endpoint.wait_acceptable(wait_readable)
        if self._closed:
            raise trio.ClosedResourceError(f"{self.url}: listener was closed")
        return int(Events.READ)  # a connection is waiting

    def __repr__(self) -> str:
        return f"<Listener {self.url}{' closed' if self._closed else ''}>"

"""The trio face's byte streams over raw endpoints: SocketStream, PipeStream.

The loops that move bytes live in :mod:`.._fdio`, shared with the anyio face;
these classes bind trio's primitives and errors (:data:`._face.TRIO`) and add
what only trio users see (``split``, addresses, peer credentials).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import final

from .._endpoints import StreamEndpoint
from .._fdio import DEFAULT_RECEIVE_SIZE, PipeIO, SocketIO
from .._fdpass import StreamFdPassing
from .._io import FaceHooks, FdHolder
from .._sendfile import SENDFILE_TO_PIPES, SendFileIO, fd_writer, socket_writer
from .._url import URL
from ._abc import Stream
from ._connected import ConnectedSocket
from ._face import TRIO
from ._seqpacket import SeqpacketChannel

_SEQPACKET = getattr(socket, "SOCK_SEQPACKET", -1)
__all__ = ["DEFAULT_RECEIVE_SIZE", "PipeStream", "SocketStream", "stream_from_endpoint"]


def _start(stream: FaceHooks, endpoint: StreamEndpoint) -> None:
    """What every trio stream over an endpoint sets up first."""
    url = stream.url = endpoint.url
    stream._closed = False
    stream._on_close = endpoint.on_close
    stream._bind(TRIO)
    stream._conflicts(
        TRIO,
        f"{url}: another task is already sending on this stream",
        f"{url}: another task is already receiving from this stream",
    )


@final
class SocketStream(SocketIO, ConnectedSocket, StreamFdPassing, SendFileIO, Stream):
    """A stream over a connected socket (tcp, tcp4, tcp6, local).

    On ``local://`` it passes descriptors too: ``send_fds(message, fds)``,
    ``receive_fds(msglen, maxfds)`` (anyio's signatures; see
    ``docs/local-ipc.md``).
    """

    _sendfile_ok = True

    def __init__(self, endpoint: StreamEndpoint) -> None:
        _start(self, endpoint)
        self._init_socket(endpoint)

    def _file_sink(self) -> tuple[int, Callable[[memoryview], int]]:
        if self._closed or self._did_shutdown:
            raise self._closed_error()
        return self._fd, socket_writer(self._sock)


@final
class PipeStream(PipeIO, SendFileIO, Stream):
    """A stream over one or two pipe descriptors (anon, fifo, unnamed local).

    A one-way end (a FIFO's reader or writer) behaves on its missing side like
    a stream that was already half-closed: sending raises ClosedResourceError.
    """

    _sendfile_ok = SENDFILE_TO_PIPES

    def __init__(self, endpoint: StreamEndpoint) -> None:
        _start(self, endpoint)
        self._init_pipe(endpoint)

    def _file_sink(self) -> tuple[int, Callable[[memoryview], int]]:
        writer = self._writer
        if writer is None or writer.closed:
            raise self._one_way_error("sending")
        return writer.fd, fd_writer(writer.fd)

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


def stream_from_endpoint(endpoint: StreamEndpoint) -> Stream:
    """The trio stream for a raw endpoint; takes ownership of its descriptors."""
    if endpoint.sock is not None:
        if endpoint.sock.type == _SEQPACKET:
            return SeqpacketChannel(endpoint)
        return SocketStream(endpoint)
    if sys.platform == "win32" and (  # pragma: no cover
        endpoint.read_handle is not None or endpoint.write_handle is not None
    ):
        from ._stream_windows import HandleStream  # Windows pipe HANDLEs

        return HandleStream(endpoint)
    return PipeStream(endpoint)

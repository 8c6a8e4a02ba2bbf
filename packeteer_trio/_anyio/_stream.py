"""The anyio face of byte streams: lean loops, read-ahead, or anyio's own.

Which class moves the bytes depends on the backend (measured, see the
"anyio on asyncio and uvloop" section of ``benchmarks/README.md``):

- sockets under asyncio with ``add_reader`` (the selector loop, uvloop): the
  read-ahead streams of :mod:`._selecting` (on uvloop's TCP transports,
  :mod:`._transport`);
- sockets on an asyncio loop without ``add_reader`` (Windows' proactor):
  anyio's own stream on the loop's IOCP transports, made with
  ``from_socket`` from the socket the scheme connected, behind a thin shell
  that adds the URL;
- sockets under trio, and pipes everywhere: the lean loops of
  :mod:`.._fdio` (shared with the trio face) with anyio's waits bound in,
  keeping trio's checkpoint sandwich: cancellation never arrives after bytes
  left the kernel.
"""

from __future__ import annotations

import array
import asyncio
import socket
import sys
from asyncio.selector_events import BaseSelectorEventLoop
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from io import IOBase
from typing import Any, final

import anyio
import anyio.abc

from .._endpoints import StreamEndpoint
from .._errors import PacketeerError
from .._fdio import FIRST_PAUSE, PipeIO, SocketIO
from .._io import FaceHooks
from .._url import URL
from ._backend import ANYIO, Backend, PacketeerAttribute, current_backend
from ._selecting import ReadAheadSocketStream, ReadAheadUNIXSocketStream
from ._transport import TransportSocketStream


class _Lean(FaceHooks):
    """State, errors and anyio's ``receive`` for the lean socket and pipe
    streams (the loops come from :mod:`.._fdio`)."""

    def _start(self, endpoint: StreamEndpoint, backend: Backend) -> None:
        self.url = endpoint.url
        self._on_close = endpoint.on_close
        self._closed = False
        self._bind(backend)
        self._conflicts(backend, "sending to", "receiving from")

    # SocketIO's or PipeIO's, earlier in the MRO of each class below.
    receive_some: Callable[[int | None], Awaitable[bytes]]

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.receive_some(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data


class _LeanSocket(SocketIO, _Lean):
    """A connected socket moved by the lean loop (anyio's trio backend)."""

    def __init__(self, endpoint: StreamEndpoint, backend: Backend) -> None:
        self._start(endpoint, backend)
        self._init_socket(endpoint)

    # anyio's name (and parameter name: callers pass ``send(item=...)``) for
    # send_all. A plain function handing back send_all's coroutine, not an
    # ``async def`` awaiting it: a call still makes one coroutine, not two.
    def send(self, item: bytes) -> Coroutine[Any, Any, None]:
        return self.send_all(item)

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock


@final
class LeanSocketStream(_LeanSocket, anyio.abc.SocketStream):
    """A connected IP socket moved by the lean loop (anyio's trio backend)."""

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {**super().extra_attributes, PacketeerAttribute.url: lambda: self.url}


@final
class LeanUNIXSocketStream(_LeanSocket, anyio.abc.UNIXSocketStream):
    """A connected AF_UNIX socket moved by a lean loop; passes descriptors too."""

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {**super().extra_attributes, PacketeerAttribute.url: lambda: self.url}

    async def send_fds(self, message: bytes, fds: Collection[int | IOBase]) -> None:
        if sys.platform == "win32":  # pragma: no cover - CPython has no AF_UNIX there
            raise _no_af_unix(self.url)
        if not message:
            raise ValueError("message must not be empty")
        if not fds:
            raise ValueError("fds must not be empty")
        filenos = [fd if isinstance(fd, int) else fd.fileno() for fd in fds]
        ancdata = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", filenos))]
        with self._send_conflict:
            await self._checkpoint()
            if self._closed or self._did_shutdown:
                raise self._closed_error()
            with memoryview(message) as view:
                sent, pause = 0, FIRST_PAUSE
                while sent < len(view):
                    try:
                        sent += self._sock.sendmsg([view[sent:]], ancdata)
                    except BlockingIOError:
                        await self._wait_writable(self._fd)
                        continue
                    except OSError as exc:  # ENOMEM, ENOBUFS: pause and retry
                        pause = await self._pause_for_memory(exc, pause)
                        continue
                    ancdata = []  # the descriptors went with the first write

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        if sys.platform == "win32":  # pragma: no cover - CPython has no AF_UNIX there
            raise _no_af_unix(self.url)
        if not isinstance(msglen, int) or msglen < 0:
            raise ValueError("msglen must be a non-negative integer")
        if not isinstance(maxfds, int) or maxfds < 1:
            raise ValueError("maxfds must be a positive integer")
        fds = array.array("i")
        with self._receive_conflict:
            await self._checkpoint()
            if self._closed:
                raise self._closed_error()
            pause = FIRST_PAUSE
            while True:
                try:
                    message, ancdata, _, _ = self._sock.recvmsg(
                        msglen, socket.CMSG_LEN(maxfds * fds.itemsize)
                    )
                    break
                except BlockingIOError:
                    await self._wait_readable(self._fd)
                except OSError as exc:  # ENOMEM, ENOBUFS: pause and retry
                    pause = await self._pause_for_memory(exc, pause)
        if not message and not ancdata:
            raise anyio.EndOfStream
        for level, kind, data in ancdata:
            if level != socket.SOL_SOCKET or kind != socket.SCM_RIGHTS:
                raise RuntimeError(
                    f"{self.url}: unexpected ancillary data (level {level}, "
                    f"type {kind}) with message {message!r}"
                )
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        return message, list(fds)


def _no_af_unix(url: URL) -> PacketeerError:
    return PacketeerError(f"{url}: descriptors pass only over AF_UNIX (POSIX)")


class _Shell:
    """anyio's own stream for a socket (asyncio without add_reader), plus the URL.

    The hot methods are the inner stream's own bound methods, stored on the
    instance: a delegating ``async def`` would add a coroutine per call,
    and such wrapper layers are the whole speed margin on small messages.
    """

    _inner: anyio.abc.SocketStream

    def __init__(self, inner: anyio.abc.SocketStream, endpoint: StreamEndpoint) -> None:
        assert endpoint.sock is not None
        self._inner = inner
        self._sock = endpoint.sock
        self._url = endpoint.url
        self._on_close = endpoint.on_close
        # Shadowing methods per instance is what mypy forbids by assignment;
        # the bound methods have exactly the ABC's signatures (tests check the
        # instances), so store them in the instance dict directly.
        vars(self).update(
            receive=inner.receive, send=inner.send, send_eof=inner.send_eof
        )

    @property
    def url(self) -> URL:
        """The URL this stream was opened with, narrowed and resolved."""
        return self._url

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        # anyio's asyncio streams report the transport's TransportSocket proxy
        # as raw_socket; we report the socket itself, as the trio backend does.
        return {
            **self._inner.extra_attributes,
            anyio.abc.SocketAttribute.raw_socket: lambda: self._sock,
            PacketeerAttribute.url: lambda: self._url,
        }

    # Only reached through the class (the instance attributes shadow them).
    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._inner.send(item)

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._url}>"


@final
class WrappedSocketStream(_Shell, anyio.abc.SocketStream):
    """anyio's own IP stream (asyncio), plus the URL."""


@final
class WrappedUNIXSocketStream(_Shell, anyio.abc.UNIXSocketStream):
    """anyio's own AF_UNIX stream (asyncio), plus the URL."""

    _inner: anyio.abc.UNIXSocketStream

    def __init__(
        self, inner: anyio.abc.UNIXSocketStream, endpoint: StreamEndpoint
    ) -> None:
        super().__init__(inner, endpoint)
        vars(self).update(send_fds=inner.send_fds, receive_fds=inner.receive_fds)

    async def send_fds(self, message: bytes, fds: Collection[int | IOBase]) -> None:
        await self._inner.send_fds(message, fds)

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        return await self._inner.receive_fds(msglen, maxfds)


@final
class PipeStream(PipeIO, _Lean, anyio.abc.ByteStream):
    """A byte stream over one or two pipe descriptors (anon, fifo, unnamed local).

    A one-way end (a FIFO's reader or writer) behaves on its missing side
    like a stream that was already half-closed: sending (or receiving)
    raises ClosedResourceError.
    """

    def __init__(self, endpoint: StreamEndpoint, backend: Backend) -> None:
        self._start(endpoint, backend)
        self._init_pipe(endpoint)

    def send(self, item: bytes) -> Coroutine[Any, Any, None]:
        return self.send_all(item)  # one coroutine per call, as LeanSocketStream

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {PacketeerAttribute.url: lambda: self.url}


async def wrap_stream(endpoint: StreamEndpoint) -> anyio.abc.ByteStream:
    """The anyio stream for a raw endpoint; takes ownership of its descriptors.

    On failure (also cancellation) the endpoint is closed before raising.
    """
    backend = current_backend()
    sock = endpoint.sock
    try:
        if endpoint.read_handle is not None or endpoint.write_handle is not None:
            raise PacketeerError(
                f"{endpoint.url}: Windows pipe handles have only the trio face "
                "so far; use packeteer_trio.connect()/listen() from trio"
            )
        if sock is None:
            return PipeStream(endpoint, backend)
        unix = sock.family == getattr(socket, "AF_UNIX", None)
        if backend.is_trio:
            if unix:
                return LeanUNIXSocketStream(endpoint, backend)
            return LeanSocketStream(endpoint, backend)
        if backend is ANYIO:
            if unix:
                return ReadAheadUNIXSocketStream(endpoint, backend)
            if isinstance(asyncio.get_running_loop(), BaseSelectorEventLoop):
                return ReadAheadSocketStream(endpoint, backend)
            # uvloop: its TCP transport reads in C. Shielded: the connection
            # is made (maybe accepted from a client that is waiting for us);
            # building the transport takes one loop turn.
            with anyio.CancelScope(shield=True):
                stream = await TransportSocketStream.open(endpoint, backend)
            return stream
        # Shielded: the connection is made (maybe accepted from a client that
        # is waiting for us); building the transport takes one loop turn.
        wrapped: anyio.abc.SocketStream | None = None
        with anyio.CancelScope(shield=True):
            if unix:
                inner_unix = await anyio.abc.UNIXSocketStream.from_socket(sock)
                wrapped = WrappedUNIXSocketStream(inner_unix, endpoint)
            else:
                inner = await anyio.abc.SocketStream.from_socket(sock)
                wrapped = WrappedSocketStream(inner, endpoint)
        assert wrapped is not None
        return wrapped
    except BaseException:
        endpoint.close()
        raise

"""The anyio face of byte streams: lean loops, read-ahead, or anyio's own.

Which class moves the bytes depends on the backend (measured, see the
"anyio on asyncio and uvloop" section of ``benchmarks/README.md``):

- sockets under asyncio with ``add_reader`` (the selector loop, uvloop): the
  read-ahead streams of :mod:`._selecting` (on uvloop's TCP transports,
  :mod:`._transport`);
- sockets on an asyncio loop without ``add_reader`` (Windows' proactor):
  anyio's own stream on the loop's IOCP transports, made with
  ``from_socket`` from the socket the scheme connected, behind a thin shell
  that adds the URL (and, for AF_UNIX, descriptor passing from
  :mod:`.._fdpass`);
- pipes and FIFOs under asyncio with ``add_reader``: the read-ahead pipe
  stream of :mod:`._pipe_readahead`;
- sockets under trio, and other pipes (trio; Windows; files and terminals
  behind ``fd://``): the lean loops of :mod:`.._fdio` (shared with the trio
  face) with anyio's waits bound in, keeping trio's checkpoint sandwich:
  cancellation never arrives after bytes left the kernel.
"""

from __future__ import annotations

import asyncio
import socket
from asyncio.selector_events import BaseSelectorEventLoop
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, final

import anyio
import anyio.abc

from .._endpoints import StreamEndpoint
from .._errors import PacketeerError
from .._fdio import PipeIO, SocketIO
from .._fdpass import StreamFdPassing
from .._io import FaceHooks
from .._url import URL
from ._abc import Stream
from ._backend import ANYIO, Backend, PacketeerAttribute, current_backend
from ._pipe_readahead import ReadAheadPipeStream, suits
from ._selecting import ReadAheadSocketStream, ReadAheadUNIXSocketStream
from ._seqpacket import SeqpacketStream
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
class LeanSocketStream(_LeanSocket, anyio.abc.SocketStream, Stream):
    """A connected IP socket moved by the lean loop (anyio's trio backend)."""

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {**super().extra_attributes, PacketeerAttribute.url: lambda: self.url}


@final
class LeanUNIXSocketStream(
    _LeanSocket, StreamFdPassing, anyio.abc.UNIXSocketStream, Stream
):
    """A connected AF_UNIX socket moved by the lean loop (anyio's trio backend).

    Passes descriptors with :mod:`.._fdpass` (shared with the trio face):
    anyio's signatures, and no received descriptor is ever leaked.
    """

    _end_of_stream = anyio.EndOfStream

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {**super().extra_attributes, PacketeerAttribute.url: lambda: self.url}


class _Shell:
    """anyio's own stream for a socket (asyncio without add_reader), plus the URL.

    The hot methods are the inner stream's own bound methods, stored on the
    instance: a delegating ``async def`` would add a coroutine per call,
    and such wrapper layers are the whole speed margin on small messages.
    """

    _inner: anyio.abc.SocketStream
    url: URL

    def __init__(self, inner: anyio.abc.SocketStream, endpoint: StreamEndpoint) -> None:
        assert endpoint.sock is not None
        self._inner = inner
        self._sock = endpoint.sock
        self.url = endpoint.url
        self._on_close = endpoint.on_close
        # Shadowing methods per instance is what mypy forbids by assignment;
        # the bound methods have exactly the ABC's signatures (tests check the
        # instances), so store them in the instance dict directly.
        vars(self).update(
            receive=inner.receive, send=inner.send, send_eof=inner.send_eof
        )

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
            PacketeerAttribute.url: lambda: self.url,
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
        return f"<{type(self).__name__} {self.url}>"


@final
class WrappedSocketStream(_Shell, anyio.abc.SocketStream, Stream):
    """anyio's own IP stream (asyncio), plus the URL."""


@final
class WrappedUNIXSocketStream(
    _Shell, StreamFdPassing, anyio.abc.UNIXSocketStream, Stream
):
    """anyio's own AF_UNIX stream (asyncio), plus the URL; descriptors pass
    through :mod:`.._fdpass` (anyio's own ``receive_fds`` would leave
    descriptors beyond *maxfds* to the kernel unreported)."""

    _end_of_stream = anyio.EndOfStream

    def __init__(
        self,
        inner: anyio.abc.UNIXSocketStream,
        endpoint: StreamEndpoint,
        backend: Backend,
    ) -> None:
        super().__init__(inner, endpoint)
        self._fd = self._sock.fileno()
        self._closed = False
        self._bind(backend)
        # Ours guard send_fds/receive_fds; anyio's guard its send/receive.
        self._conflicts(backend, "sending to", "receiving from")

    async def aclose(self) -> None:
        self._closed = True
        await super().aclose()


@final
class PipeStream(PipeIO, _Lean, Stream):
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


async def wrap_stream(endpoint: StreamEndpoint) -> Stream:
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
            if backend is ANYIO and suits(endpoint):
                return ReadAheadPipeStream(endpoint, backend)
            return PipeStream(endpoint, backend)
        if sock.type == getattr(socket, "SOCK_SEQPACKET", -1):
            return SeqpacketStream(endpoint, backend)
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
        wrapped: Stream | None = None
        with anyio.CancelScope(shield=True):
            if unix:
                inner_unix = await anyio.abc.UNIXSocketStream.from_socket(sock)
                wrapped = WrappedUNIXSocketStream(inner_unix, endpoint, backend)
            else:
                inner = await anyio.abc.SocketStream.from_socket(sock)
                wrapped = WrappedSocketStream(inner, endpoint)
        assert wrapped is not None
        return wrapped
    except BaseException:
        endpoint.close()
        raise

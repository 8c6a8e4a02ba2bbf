"""httpcore's network stream over a packeteer connection, and TLS on top of it.

The connection is an :class:`anyio.abc.ByteStream` in every case: the anyio
face's own, or (under trio, for what only the trio face serves) a trio-face
Stream seen through :class:`TrioFaceStream`. So one class answers httpcore
on trio, asyncio and uvloop, and ``start_tls`` is anyio's TLSStream over any
of them.
"""

from __future__ import annotations

import select
import ssl
import sys
from collections.abc import Callable, Mapping
from typing import Any, final

import anyio
import anyio.abc
import anyio.streams.tls
import httpcore
import trio

import packeteer_trio as pt
from packeteer_trio import URL


def reason(exc: BaseException) -> str:
    """What went wrong, for a message: trio's and anyio's resource errors
    often carry their reason only as the cause."""
    current: BaseException | None = exc
    while current is not None:
        if str(current):
            return str(current)
        current = current.__cause__ or current.__context__
    return type(exc).__name__


class _Descriptor(anyio.TypedAttributeSet):
    # The socket descriptor under a TrioFaceStream (the trio face does not
    # hand out its socket objects): what is_readable polls.
    fileno: int = anyio.typed_attribute()


def _poll_readable(fd: int) -> bool:
    if sys.platform == "win32":
        try:  # select() takes sockets only there
            readable, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))  # POLLNVAL (a closed fd) counts: it is gone


def _sockname(url: URL) -> Any:
    """An address URL as the socket module writes it, as httpcore reports."""
    return url.path if url.port is None else (url.host, url.port)


@final
class TrioFaceStream(anyio.abc.ByteStream):
    """A trio-face :class:`packeteer_trio.Stream` as an anyio byte stream.

    For the URLs the anyio face does not serve (schemes added with
    ``register_scheme``, such as ``tls+tcp://``, and Windows pipe handles),
    under trio only; trio's exceptions become anyio's.
    """

    def __init__(self, stream: pt.Stream) -> None:
        self._stream = stream
        transport = stream.transport if isinstance(stream, pt.WrappedStream) else stream
        attributes: dict[Any, Callable[[], Any]] = {}
        if isinstance(transport, pt.SocketStream):
            local = _sockname(transport.local_address)
            peer = _sockname(transport.peer_address)
            fd = transport.fileno()
            attributes[anyio.abc.SocketAttribute.local_address] = lambda: local
            attributes[anyio.abc.SocketAttribute.remote_address] = lambda: peer
            attributes[_Descriptor.fileno] = lambda: fd
        self._attributes = attributes

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._attributes

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError(reason(exc)) from exc
        except trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError(reason(exc)) from exc
        except trio.BusyResourceError as exc:
            raise anyio.BusyResourceError("receiving from") from exc
        if not data:
            raise anyio.EndOfStream
        return data if type(data) is bytes else bytes(data)

    async def send(self, item: bytes) -> None:
        try:
            await self._stream.send_all(item)
        except trio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError(reason(exc)) from exc
        except trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError(reason(exc)) from exc
        except trio.BusyResourceError as exc:
            raise anyio.BusyResourceError("sending to") from exc

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


@final
class NetworkStream(httpcore.AsyncNetworkStream):
    """One HTTP connection over a packeteer URL, as httpcore uses it.

    Made by :class:`URLBackend`'s connects (and by :meth:`start_tls`); httpx
    shows it as ``response.extensions["network_stream"]``. Timeouts are
    httpcore's (``ReadTimeout``, ``WriteTimeout``, ``ConnectTimeout`` for the
    TLS handshake), broken connections ``ReadError`` / ``WriteError`` /
    ``ConnectError``, each naming the URL; end of stream reads as ``b""``.
    """

    def __init__(self, stream: anyio.abc.ByteStream, url: URL) -> None:
        self._stream = stream
        self._url = url

    @property
    def url(self) -> URL:
        """The packeteer URL the connection was opened to."""
        return self._url

    def __repr__(self) -> str:
        return f"<NetworkStream {self._url}>"

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to *max_bytes* bytes; ``b""`` at end of stream."""
        try:
            with anyio.fail_after(timeout):
                return await self._stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(
                f"{self._url}: nothing received within {timeout} s"
            ) from exc
        except (
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            ssl.SSLError,
        ) as exc:
            raise httpcore.ReadError(f"{self._url}: {reason(exc)}") from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """All of *buffer*, or WriteTimeout / WriteError."""
        if not buffer:
            return
        try:
            with anyio.fail_after(timeout):
                await self._stream.send(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(
                f"{self._url}: could not send within {timeout} s"
            ) from exc
        except (
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            ssl.SSLError,
        ) as exc:
            raise httpcore.WriteError(f"{self._url}: {reason(exc)}") from exc

    async def aclose(self) -> None:
        """Close the connection (and the descriptor under it)."""
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> NetworkStream:
        """TLS over this connection, whatever carries it (``https://`` over
        ``local://``, ``pipe://``, ``fd://``, …); closes it on failure."""
        try:
            with anyio.fail_after(timeout):
                tls = await anyio.streams.tls.TLSStream.wrap(
                    self._stream,
                    server_side=False,
                    hostname=server_hostname,
                    ssl_context=ssl_context,
                    # An HTTP response ends by its framing, not by
                    # close_notify (servers often skip it): as httpcore does.
                    standard_compatible=False,
                )
        except BaseException as exc:
            await anyio.aclose_forcefully(self._stream)
            if isinstance(exc, TimeoutError):
                raise httpcore.ConnectTimeout(
                    f"{self._url}: no TLS handshake within {timeout} s"
                ) from exc
            if isinstance(
                exc, anyio.BrokenResourceError | anyio.EndOfStream | ssl.SSLError
            ):
                raise httpcore.ConnectError(
                    f"{self._url}: TLS handshake with {server_hostname}: {reason(exc)}"
                ) from exc
            raise
        return NetworkStream(tls, self._url)

    def get_extra_info(self, info: str) -> Any:
        """What httpcore's own backends answer: ``ssl_object`` (of the TLS
        started here; None for ``http://``, also over ``tls+tcp://``, whose
        TLS belongs to the transport), ``client_addr`` and ``server_addr``
        (socket addresses, as the socket module writes them), ``socket``
        (where the anyio face has one), ``is_readable`` (whether an idle
        connection has something to read: the server closed it). Anything
        else, and what a transport does not have (pipes have no addresses),
        is None."""
        extra = self._stream.extra
        if info == "ssl_object":
            return extra(anyio.streams.tls.TLSAttribute.ssl_object, None)
        if info == "client_addr":
            return extra(anyio.abc.SocketAttribute.local_address, None)
        if info == "server_addr":
            return extra(anyio.abc.SocketAttribute.remote_address, None)
        if info == "socket":
            return extra(anyio.abc.SocketAttribute.raw_socket, None)
        if info == "is_readable":
            return self._is_readable()
        return None

    def _is_readable(self) -> bool:
        sock = self._stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        fd = self._stream.extra(_Descriptor.fileno, None) if sock is None else None
        if sock is not None:
            fd = sock.fileno()
        if fd is None:
            # Nothing to poll (a Windows pipe handle): taken as still open.
            # A server that closed it meanwhile shows as that request's
            # RemoteProtocolError instead of a quiet reconnect.
            return False
        return fd < 0 or _poll_readable(fd)

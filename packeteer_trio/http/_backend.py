"""httpcore's network backend over one packeteer URL."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable
from typing import final

import anyio
import anyio.abc
import httpcore
import trio

import packeteer_trio as pt
from packeteer_trio import URL, InvalidURL, anyio_compat

from ._stream import NetworkStream, TrioFaceStream, reason

# httpcore's socket option forms: (level, option, int | bytes) or
# (level, option, None, optlen).
SocketOption = (
    tuple[int, int, int]
    | tuple[int, int, bytes | bytearray]
    | tuple[int, int, None, int]
)


def _set_on(sock: socket.socket, option: SocketOption) -> None:
    if len(option) == 4:
        sock.setsockopt(option[0], option[1], None, option[3])
    else:
        sock.setsockopt(option[0], option[1], option[2])


def _set_on_trio_face(stream: pt.Stream, option: SocketOption, url: URL) -> None:
    target = stream.transport if isinstance(stream, pt.WrappedStream) else stream
    value = option[2]
    if not isinstance(target, pt.SocketStream) or value is None:
        # (The trio face's setsockopt takes a value, not an optlen.)
        raise httpcore.ConnectError(f"{url}: cannot set socket option {option} here")
    target.setsockopt(
        option[0], option[1], value if isinstance(value, int) else bytes(value)
    )


async def _open(url: URL, options: list[SocketOption]) -> anyio.abc.ByteStream:
    """A connection to *url* through the face that serves it here, with
    *options* set; closed again if they cannot be."""
    if trio.lowlevel.in_trio_task():
        if not (sys.platform == "win32" and url.scheme in ("pipe", "anon")):
            try:
                stream = await anyio_compat.connect(url)
            except InvalidURL:
                # The anyio face serves the built-in schemes; the trio face
                # also those added with register_scheme (tls+tcp://). The
                # error came before anything was opened: trying again is
                # free, and a really bad URL fails there the same way.
                pass
            else:
                return await _with_options(stream, options, url)
        # Windows pipe handles and user schemes: only the trio face has them.
        trio_stream = await pt.connect(url)
        try:
            for option in options:
                _set_on_trio_face(trio_stream, option, url)
        except BaseException:
            await trio.aclose_forcefully(trio_stream)
            raise
        return TrioFaceStream(trio_stream)
    return await _with_options(await anyio_compat.connect(url), options, url)


async def _with_options(
    stream: anyio.abc.ByteStream, options: list[SocketOption], url: URL
) -> anyio.abc.ByteStream:
    if not options:
        return stream
    try:
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is None:
            raise httpcore.ConnectError(
                f"{url}: cannot set socket options: no socket under this connection"
            )
        for option in options:
            _set_on(sock, option)
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    return stream


@final
class URLBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend whose every connection goes to *url*.

    ``connect_tcp`` and ``connect_unix_socket`` both connect to *url*
    (their host, port and path are the request's, and are not used),
    through the anyio face, which serves trio, asyncio and uvloop alike;
    under trio, what only the trio face serves (schemes added with
    ``register_scheme``, ``tls+tcp://`` among them, and Windows pipes) goes
    through the trio face. So every stream scheme works under trio, and the
    built-in ones under asyncio. Failures are httpcore's ``ConnectError`` and
    ``ConnectTimeout``, naming the URL; a URL the faces refuse raises their
    :exc:`~packeteer_trio.InvalidURL`.

    ``fd:///N`` wraps one descriptor, and closing the connection closes it:
    a second connect to it raises ``ConnectError`` instead of wrapping
    whatever file got number N next.

    The URL is parsed here: a bad one raises
    :exc:`~packeteer_trio.InvalidURL` now, as does a datagram URL.
    """

    def __init__(self, url: str | URL) -> None:
        self._url = URL.parse(url)
        if self._url.behaviour != "stream":
            raise InvalidURL(
                f"{self._url}: HTTP needs a stream URL, not ?behaviour=datagram"
            )
        self._descriptor_taken = False

    @property
    def url(self) -> URL:
        """The packeteer URL every connection goes to."""
        return self._url

    def __repr__(self) -> str:
        return f"URLBackend({str(self.url)!r})"

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> NetworkStream:
        """A connection to :attr:`url` (*host*, *port* and *local_address*
        are the request's and not used); *socket_options* are set on its
        socket."""
        return await self._connect(timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> NetworkStream:
        """A connection to :attr:`url`, as :meth:`connect_tcp` (*path* is not
        used: httpx's ``uds=`` is the URL's job here)."""
        return await self._connect(timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        """Sleep on whichever event loop runs (httpcore's retry back-off)."""
        await anyio.sleep(seconds)

    async def _connect(
        self, timeout: float | None, socket_options: Iterable[SocketOption] | None
    ) -> NetworkStream:
        url = self.url
        if url.scheme == "fd":
            if self._descriptor_taken:
                raise httpcore.ConnectError(
                    f"{url}: the descriptor was taken by an earlier connection "
                    "(and closed with it); fd:// connects once"
                )
            self._descriptor_taken = True
        options = list(socket_options or ())
        deadline: anyio.CancelScope | None = None
        try:
            with anyio.fail_after(timeout) as deadline:
                stream = await _open(url, options)
        except TimeoutError as exc:
            if deadline is not None and deadline.cancelled_caught:
                raise httpcore.ConnectTimeout(
                    f"{url}: not connected within {timeout} s"
                ) from exc
            raise httpcore.ConnectError(reason(exc)) from exc
        except (OSError, anyio.BrokenResourceError, trio.BrokenResourceError) as exc:
            # The OSErrors name the URL already (and so does the rest, here).
            text = reason(exc)
            raise httpcore.ConnectError(
                text if str(url) in text else f"{url}: {text}"
            ) from exc
        return NetworkStream(stream, url)

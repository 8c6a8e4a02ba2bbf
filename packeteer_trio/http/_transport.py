"""httpx's side: a transport over one packeteer URL, and a client built on it."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, final

import httpcore
import httpx

from packeteer_trio import URL

from ._backend import SocketOption, URLBackend

# httpcore's exceptions as httpx's, most specific first: the first row that
# matches wins (an httpcore.ReadTimeout is a TimeoutException too, and must
# become httpx.ReadTimeout). The same outcome as httpx's own transport.
EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)

# httpx's defaults (httpx.AsyncClient's own).
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


@contextlib.contextmanager
def httpx_exceptions() -> Iterator[None]:
    """Raise httpcore's exceptions as httpx's (the message kept, the
    original as the cause); anything else passes unchanged."""
    try:
        yield
    except Exception as exc:
        for source, target in EXCEPTIONS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with httpx_exceptions():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            with httpx_exceptions():
                await aclose()


@final
class URLTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose every request goes over *url*.

    ``httpx.AsyncClient(transport=URLTransport("local:///run/app.sock"))``.
    It is httpcore's :class:`~httpcore.AsyncConnectionPool` on a
    :class:`URLBackend`: pooling, keep-alive, HTTP/1.1 (and HTTP/2 with
    ``http2=True`` and the ``h2`` package), timeouts and retries of failed
    connects are httpcore's; its exceptions reach you as httpx's, as with
    httpx's own transport. *verify* (True, False or an
    :class:`ssl.SSLContext`) and *trust_env* make the TLS context of
    ``https://`` requests, as httpx does; *limits*, *http1*, *http2*,
    *retries* and *socket_options* mean what they mean to
    :class:`httpx.AsyncHTTPTransport`.

    ``fd://`` URLs carry a single connection: the pool is then limited to
    one, kept open however long it idles.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        retries: int = 0,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> None:
        self._backend = URLBackend(url)
        keepalive_expiry = limits.keepalive_expiry
        max_connections = limits.max_connections
        if self._backend.url.scheme == "fd":
            max_connections, keepalive_expiry = 1, None
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=trust_env),
            max_connections=max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=keepalive_expiry,
            http1=http1,
            http2=http2,
            retries=retries,
            socket_options=socket_options,
            network_backend=self._backend,
        )

    @property
    def backend(self) -> URLBackend:
        """The :class:`URLBackend` the connections are made with."""
        return self._backend

    @property
    def url(self) -> URL:
        """The packeteer URL every request goes over."""
        return self._backend.url

    def __repr__(self) -> str:
        return f"URLTransport({str(self.url)!r})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* over a pooled connection (what httpx calls)."""
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError(
                f"{self.url}: URLTransport is asynchronous; use httpx.AsyncClient"
            )
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with httpx_exceptions():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)  # the async pool's
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        with httpx_exceptions():
            await self._pool.aclose()


def client(
    url: str | URL,
    *,
    verify: ssl.SSLContext | bool = True,
    trust_env: bool = True,
    http1: bool = True,
    http2: bool = False,
    limits: httpx.Limits = DEFAULT_LIMITS,
    retries: int = 0,
    socket_options: Iterable[SocketOption] | None = None,
    base_url: str | httpx.URL = "http://localhost",
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An :class:`httpx.AsyncClient` whose requests all go over *url*.

    ``async with client("local:///var/run/docker.sock") as docker:
    await docker.get("/version")``. Relative request URLs are made absolute
    with *base_url* (``http://localhost``); its host, or an absolute
    request URL's, is only the ``Host`` header and the name ``https://``
    checks the certificate against. The transport arguments go to
    :class:`URLTransport`; the rest (*kwargs*: ``timeout``, ``headers``,
    ``auth``, ``event_hooks``, …) to :class:`httpx.AsyncClient`. ``proxy``
    and ``transport`` are refused: they would send requests elsewhere.
    """
    for name in ("transport", "proxy", "proxies"):
        if name in kwargs:
            raise TypeError(
                f"client({str(url)!r}): {name}= would send requests elsewhere "
                "than the URL; use httpx.AsyncClient with URLTransport and mounts"
            )
    transport = URLTransport(
        url,
        verify=verify,
        trust_env=trust_env,
        http1=http1,
        http2=http2,
        limits=limits,
        retries=retries,
        socket_options=socket_options,
    )
    return httpx.AsyncClient(
        transport=transport, base_url=base_url, trust_env=trust_env, **kwargs
    )

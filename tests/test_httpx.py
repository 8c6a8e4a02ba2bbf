"""A real client over the anyio face: httpx (through httpcore) on asyncio and trio.

httpcore moves an HTTP connection's bytes with ``await stream.send(item=...)``
and ``await stream.receive(max_bytes=...)`` on an ``anyio.abc.ByteStream``
(its ``AnyIOStream``, which httpx uses on anyio for every connection). Here
its connection pool gets a network backend that opens that stream with
``packeteer_trio.anyio_compat.connect`` instead of ``anyio.connect_tcp``,
and talks to a small HTTP/1.1 server written with h11 on
``anyio_compat.serve``. Nothing else is ours: the requests, keep-alive,
chunking and parsing are httpx's, httpcore's and h11's.

Tests only: a real HTTP integration (an httpcore backend shipped with the
package) is a separate piece of work.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import h11
import httpcore
import httpx
import pytest

# httpcore's own adapter from an anyio ByteStream to its network stream:
# the code under test on the client side, not a stand-in for it.
from httpcore._backends.anyio import AnyIOStream

from packeteer_trio import anyio_compat as pa

from .conftest import posix_only

pytestmark = pytest.mark.anyio

BIG = os.urandom(3 << 20)  # more than any socket buffer: sends must wait


@pytest.fixture(
    params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


class PacketeerBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting through packeteer_trio's anyio face."""

    def __init__(self) -> None:
        self.opened: list[anyio.abc.ByteStream] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with anyio.fail_after(timeout):
            stream = await pa.connect(f"tcp://{host}:{port}")
        self.opened.append(stream)
        return AnyIOStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with anyio.fail_after(timeout):
            stream = await pa.connect(f"local://{path}")
        self.opened.append(stream)
        return AnyIOStream(stream)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


class PacketeerTransport(httpx.AsyncBaseTransport):
    """An httpx transport: httpcore's connection pool on :class:`PacketeerBackend`."""

    def __init__(self, *, uds: str | None = None) -> None:
        self.backend = PacketeerBackend()
        self._pool = httpcore.AsyncConnectionPool(uds=uds, network_backend=self.backend)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        response = await self._pool.handle_async_request(
            httpcore.Request(
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
        )
        assert isinstance(response.stream, AsyncIterable)  # the async pool's
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


async def http_server(stream: anyio.abc.ByteStream) -> None:
    """HTTP/1.1 with keep-alive: ``GET /big`` sends BIG, anything else is
    answered with the method, target, body length and the body's SHA-256."""
    connection = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    body = bytearray()
    async with stream:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive()
                except anyio.EndOfStream:
                    data = b""
                connection.receive_data(data)
            elif isinstance(event, h11.Request):
                request, body = event, bytearray()
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                if request.target == b"/big":
                    reply = BIG
                else:
                    reply = b"%s %s %d %s" % (
                        request.method,
                        request.target,
                        len(body),
                        hashlib.sha256(body).hexdigest().encode(),
                    )
                head = h11.Response(
                    status_code=200, headers=[("content-length", str(len(reply)))]
                )
                await stream.send(connection.send(head) or b"")
                await stream.send(connection.send(h11.Data(data=reply)) or b"")
                await stream.send(connection.send(h11.EndOfMessage()) or b"")
                connection.start_next_cycle()
            else:  # ConnectionClosed (or PAUSED after a close): done
                return


async def exercise(client: httpx.AsyncClient, base: str) -> None:
    with anyio.fail_after(20):
        response = await client.get(f"{base}/hello?x=1")
        assert response.status_code == 200
        assert response.content == b"GET /hello?x=1 0 " + (
            hashlib.sha256(b"").hexdigest().encode()
        )
        upload = os.urandom(1 << 20)
        response = await client.post(f"{base}/upload", content=upload)
        assert response.content == b"POST /upload %d %s" % (
            len(upload),
            hashlib.sha256(upload).hexdigest().encode(),
        )
        response = await client.get(f"{base}/big")
        assert response.content == BIG
        async with client.stream("GET", f"{base}/big") as streamed:
            parts = [part async for part in streamed.aiter_bytes()]
        assert b"".join(parts) == BIG


class Server:
    """Runs :func:`http_server` per connection and tells when all have ended."""

    def __init__(self) -> None:
        self.served = 0
        self.running = 0
        self.all_done = anyio.Event()

    async def handler(self, stream: anyio.abc.ByteStream) -> None:
        self.served += 1
        self.running += 1
        try:
            await http_server(stream)
        finally:
            self.running -= 1
            if not self.running:
                self.all_done.set()

    async def wait_done(self) -> None:
        # The client closed its connection; the server stops once its handler
        # read that EOF. (Cancelling a handler's receive in the same loop turn
        # as its socket turns readable makes anyio 4.16's own asyncio AF_UNIX
        # stream, which the asyncio face hands out, log InvalidStateError from
        # Future.set_result: an anyio race, reproduced with anyio alone.)
        with anyio.fail_after(5):
            await self.all_done.wait()


async def run_client(url: str, *, uds: str | None = None) -> None:
    server = Server()
    async with anyio.create_task_group() as group:
        listeners = await group.start(pa.serve, url, server.handler)
        bound = listeners[0].url
        base = "http://localhost" if uds else f"http://{bound.host}:{bound.port}"
        transport = PacketeerTransport(uds=uds)
        async with httpx.AsyncClient(transport=transport) as client:
            await exercise(client, base)
        await server.wait_done()
        group.cancel_scope.cancel()
    # Keep-alive: httpx used one connection for all four requests.
    assert len(transport.backend.opened) == 1
    assert server.served == 1


async def test_httpx_over_tcp() -> None:
    await run_client("tcp://127.0.0.1:0")


@posix_only
async def test_httpx_over_a_local_socket(tmp_path: Path) -> None:
    path = tmp_path / "http.sock"
    await run_client(f"local://{path}", uds=str(path))

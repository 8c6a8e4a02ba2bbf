"""HTTP servers for tests/test_http.py, each in a thread with its own trio run.

A thread, so that the client under test can run on any event loop (trio,
asyncio, uvloop) while the server stays the same:

- :class:`H11Server`: an HTTP/1.1 server written with h11 on a packeteer
  listener (the trio face), any stream scheme; it counts the connections it
  accepts, and has paths that misbehave on purpose;
- :class:`Hypercorn`: hypercorn serving :func:`asgi_app` on a packeteer
  listener's socket, handed over as ``fd://`` (a duplicate: hypercorn closes
  what it is given).

Paths (both servers): any ``GET``/``POST`` answers ``METHOD TARGET LENGTH
SHA256`` of the body it received; ``/big`` answers :data:`BIG`. The h11
server also has ``/die`` (promises 1 MB, sends 1000 bytes, closes), ``/eof``
(a body without length, ended by closing without TLS's close_notify),
``/stall`` (never answers), ``/sink`` (never reads the body) and ``/close``
(answers, then closes the connection), and ``/version`` (a little of what
Docker's API says there).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
from types import TracebackType
from typing import Any

import h11
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

import packeteer_trio as pt

BIG = os.urandom(3 << 20)  # more than any socket buffer: sends must wait
DIE_LENGTH = 1 << 20
DOCKER_VERSION = b'{"ApiVersion":"1.47","Version":"27.3.1","Os":"linux"}'
# HTTP/1.0's framing: no length, the body ends with the connection.
EOF_RESPONSE = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nthe body ends at EOF"


def summary(method: bytes, target: bytes, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest().encode()
    return b"%s %s %d %s" % (method, target, len(body), digest)


class _ServerThread:
    """Runs :meth:`serve` in a thread's trio run; ``url`` is where it listens."""

    def __init__(self, url: str) -> None:
        self._listen_url = url
        self._url: pt.URL | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> pt.URL:
        """The bound URL (the real port filled in)."""
        assert self._url is not None, "not started"
        return self._url

    async def serve(self, listener: pt.Listener) -> None:  # pragma: no cover
        raise NotImplementedError

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as self._scope:
                async with await pt.listen(self._listen_url) as listener:
                    self._url = listener.url
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self.serve, listener)
                        await trio.sleep(0)
                        self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> Any:
        self._thread.start()
        self._ready.wait(20)
        if self._url is None:
            self._thread.join(20)
            raise RuntimeError(f"server on {self._listen_url} did not start") from (
                self._error
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._error is not None and exc is None:
            raise self._error

    def stop(self) -> None:
        """Stop serving: every connection and the listener are closed."""
        if self._token is not None and self._scope is not None:
            try:  # (from any thread, also from inside the client's trio run)
                self._token.run_sync_soon(self._scope.cancel)
            except trio.RunFinishedError:
                pass
        self._thread.join(20)
        assert not self._thread.is_alive(), "the server thread did not stop"


class H11Server(_ServerThread):
    """HTTP/1.1 with keep-alive, written with h11, on any packeteer listener.

    *tls*: wrap each accepted stream in server-side TLS (``https://`` over
    whatever the URL is). ``accepted`` counts connections.
    """

    def __init__(self, url: str, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(url)
        self.tls = tls
        self.accepted = 0

    async def serve(self, listener: pt.Listener) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                self.accepted += 1
                nursery.start_soon(self._connection, stream)

    async def _connection(self, raw: pt.Stream) -> None:
        stream: trio.abc.Stream = raw
        if self.tls is not None:
            stream = trio.SSLStream(raw, self.tls, server_side=True)
        outcome = "abort"
        try:
            outcome = await self._http(stream)
        except trio.BrokenResourceError:  # the client went away (or failed TLS)
            pass
        finally:
            try:
                # "abort" (also when stopped): no TLS goodbye (close_notify),
                # as many servers do.
                await (stream if outcome == "close" else raw).aclose()
            except trio.BrokenResourceError:
                pass

    async def _http(self, stream: trio.abc.Stream) -> str:
        connection = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()

        async def send(*events: Any) -> None:
            for event in events:
                await stream.send_all(connection.send(event) or b"")

        def head(length: int, *headers: tuple[str, str]) -> h11.Response:
            return h11.Response(
                status_code=200, headers=[("content-length", str(length)), *headers]
            )

        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(bytes(await stream.receive_some()))
            elif isinstance(event, h11.Request):
                request, body = event, bytearray()
                if event.target == b"/stall":
                    await trio.sleep_forever()
                if event.target == b"/sink":  # never reads the upload
                    await trio.sleep_forever()
                if event.target == b"/die":
                    await send(head(DIE_LENGTH), h11.Data(data=b"x" * 1000))
                    return "abort"  # closed without the rest: a server that died
                if event.target == b"/eof":  # a body that ends where the stream does
                    await stream.send_all(EOF_RESPONSE)
                    return "abort"
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                if request.target == b"/big":
                    reply = BIG
                elif request.target == b"/version":  # as Docker's API answers
                    reply = DOCKER_VERSION
                else:
                    reply = summary(request.method, request.target, bytes(body))
                if request.target == b"/close":
                    await send(
                        head(len(reply), ("connection", "close")),
                        h11.Data(data=reply),
                        h11.EndOfMessage(),
                    )
                    return "close"
                await send(head(len(reply)), h11.Data(data=reply), h11.EndOfMessage())
                connection.start_next_cycle()
            else:  # ConnectionClosed: the client is done
                return "close"


async def asgi_app(
    scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    """The same answers as H11Server's ordinary paths, as an ASGI app."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = bytearray()
    while True:
        event = await receive()
        if event["type"] != "http.request":  # the client went away
            return
        body += event["body"]
        if not event["more_body"]:
            break
    target = scope["raw_path"]
    if scope["query_string"]:
        target += b"?" + scope["query_string"]
    if scope["path"] == "/big":
        reply = BIG
    else:
        reply = summary(scope["method"].encode(), target, bytes(body))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(reply)).encode())],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": reply, "more_body": False})


class Hypercorn(_ServerThread):
    """hypercorn (its trio worker) serving :func:`asgi_app` on our listener.

    The listening socket is handed over as ``fd://`` of a duplicate (a
    handle on Windows):
    hypercorn closes the descriptor it is given, and our listener keeps (and
    on close removes) its own.
    """

    async def serve(self, listener: pt.Listener) -> None:
        from hypercorn.config import Config
        from hypercorn.trio import serve

        config = Config()
        # socket.dup(), not os.dup(): on Windows a socket is no CRT descriptor.
        [sock] = listener.sockets
        config.bind = [f"fd://{sock.dup().detach()}"]
        config.graceful_timeout = 0.1
        await serve(asgi_app, config, mode="asgi")

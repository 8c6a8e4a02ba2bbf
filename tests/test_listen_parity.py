"""Listening and serving "like trio": the accept errors trio ignores, TCP options.

- ``serve`` (both faces) drops a connection whose accept failed with one of
  the errnos trio's ``SocketListener`` ignores (its list in
  ``trio/_highlevel_socket.py``) and keeps serving, whichever listener
  raised it: our socket listeners (tcp, local) and a user scheme's.
- TCP listeners: SO_REUSEADDR on POSIX only (on Windows it would let our
  listener bind a port another socket is listening on); the backlog capped
  at 0xFFFF; a wildcard listen skips a family the host lacks (EAFNOSUPPORT).
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trio

import packeteer_trio as pt
from packeteer_trio import URL, _registry
from packeteer_trio import anyio_compat as pa
from packeteer_trio._accept import IGNORABLE_ACCEPT_ERRNOS
from packeteer_trio._anyio._listener import OSListener as AnyioOSListener
from packeteer_trio._api import serve_listeners
from packeteer_trio._endpoints import ListenerEndpoint, StreamEndpoint, WaitFd
from packeteer_trio._trio._listener import OSListener
from packeteer_trio.schemes import _inet

from .conftest import posix_only

# trio's own list, by name: what trio ignores, we must too (where defined).
TRIO_IGNORES = [
    "EPERM",
    "ECONNABORTED",
    "EPROTO",
    "ENETDOWN",
    "ENOPROTOOPT",
    "EHOSTDOWN",
    "ENONET",
    "EHOSTUNREACH",
    "EOPNOTSUPP",
    "ENETUNREACH",
    "ENOSR",
    "ESOCKTNOSUPPORT",
    "EPROTONOSUPPORT",
    "ETIMEDOUT",
    "ECONNRESET",
]
INJECTED = sorted(
    {getattr(errno, name) for name in TRIO_IGNORES if hasattr(errno, name)}
)


def test_the_list_is_trios() -> None:
    trio_module = sys.modules["trio._highlevel_socket"]
    assert set(INJECTED) == trio_module._ignorable_accept_errnos
    assert set(INJECTED) == IGNORABLE_ACCEPT_ERRNOS


def inject_accept_errors(
    monkeypatch: pytest.MonkeyPatch, fileno: Callable[[], int]
) -> list[int]:
    """Make the listening socket's next accept() calls fail, one errno each.

    The connection stays queued in the kernel meanwhile, so after the last
    injected error the real accept() takes it. Returns the errnos still to
    come (empty once all were raised).
    """
    pending = list(INJECTED)
    real_accept = socket.socket.accept

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        if pending and self.fileno() == fileno():
            code = pending.pop(0)
            raise OSError(code, f"injected {errno.errorcode[code]}")
        return real_accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept)
    return pending


def stream_url(kind: str, tmp_path: Path) -> str:
    return "tcp://127.0.0.1:0" if kind == "tcp" else f"local://{tmp_path}/p.sock"


KINDS = [pytest.param("tcp"), pytest.param("local", marks=posix_only)]


@pytest.mark.trio
@pytest.mark.parametrize("kind", KINDS)
async def test_trio_serve_drops_failed_accepts(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def echo(stream: pt.Stream) -> None:
        await stream.send_all(await stream.receive_some())

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(pt.serve, stream_url(kind, tmp_path), echo)
        pending = inject_accept_errors(monkeypatch, listeners[0].fileno)
        with trio.fail_after(5):
            for n in range(3):
                async with await pt.connect(listeners[0].url) as client:
                    await client.send_all(b"hello %d" % n)
                    assert await client.receive_some() == b"hello %d" % n
        assert pending == []  # every injected error was met, and survived
        nursery.cancel_scope.cancel()


@pytest.fixture(
    params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_anyio_serve_drops_failed_accepts(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def echo(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            await stream.send(await stream.receive())

    async with anyio.create_task_group() as group:
        listeners = await group.start(pa.serve, stream_url(kind, tmp_path), echo)
        pending = inject_accept_errors(monkeypatch, listeners[0].fileno)
        with anyio.fail_after(5):
            for n in range(3):
                async with await pa.connect(listeners[0].url) as client:
                    await client.send(b"hello %d" % n)
                    assert await client.receive() == b"hello %d" % n
        assert pending == []
        group.cancel_scope.cancel()


class FlakyListener(trio.abc.Listener[trio.abc.Stream]):
    """A user scheme's listener whose accept() passes on per-connection errors
    (as a listener built on raw sockets might), then one it must not hide."""

    def __init__(self, inner: pt.Listener, errors: list[int]) -> None:
        self.inner = inner
        self.url = inner.url
        self.errors = errors

    async def accept(self) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, f"injected {errno.errorcode[code]}")
        return await self.inner.accept()

    async def aclose(self) -> None:
        await self.inner.aclose()


class FlakyScheme:
    def __init__(self) -> None:
        self.listeners: list[FlakyListener] = []

    async def connect(self, url: URL) -> trio.abc.Stream:
        raise AssertionError("not used")

    async def listen(self, url: URL, backlog: int | None) -> FlakyListener:
        inner = await pt.listen("tcp://127.0.0.1:0", backlog=backlog)
        listener = FlakyListener(inner, list(INJECTED))
        self.listeners.append(listener)
        return listener


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    inner: tuple[BaseException, ...] | None = getattr(exc, "exceptions", None)
    if inner is None:
        return [exc]
    return [leaf for each in inner for leaf in leaves(each)]


@pytest.mark.trio
async def test_serve_drops_failed_accepts_of_a_user_scheme() -> None:
    scheme = FlakyScheme()
    pt.register_scheme("flaky", scheme)

    async def echo(stream: pt.Stream) -> None:
        await stream.send_all(await stream.receive_some())

    try:
        with trio.fail_after(5), pytest.raises(BaseException) as info:
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(pt.serve, "flaky://x", echo)
                flaky = scheme.listeners[0]
                async with await pt.connect(listeners[0].url) as client:
                    await client.send_all(b"through")
                    assert await client.receive_some() == b"through"
                assert flaky.errors == []  # all of trio's list, survived
                # An error about the listener itself still ends serve().
                flaky.errors.append(errno.EINVAL)
                async with await pt.connect(listeners[0].url):
                    await trio.sleep_forever()  # serve() fails, cancelling us
    finally:
        pt.unregister_scheme("flaky")
    (error,) = leaves(info.value)
    assert isinstance(error, OSError) and error.errno == errno.EINVAL, error


class FlakyEndpoint(ListenerEndpoint):
    """Any kind of listener endpoint (a future scheme's) passing on the
    per-connection errors from try_accept, before a real listening socket."""

    def __init__(self, inner: ListenerEndpoint) -> None:
        self.inner = inner
        self.url = inner.url
        self.errors = list(INJECTED)

    def fds(self) -> list[int]:
        return self.inner.fds()

    def try_accept(self) -> StreamEndpoint | None:
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, f"{self.url}: accept failed: injected")
        return self.inner.try_accept()

    async def wait_acceptable(self, wait_readable: WaitFd) -> None:
        await self.inner.wait_acceptable(wait_readable)

    def close(self) -> None:
        self.inner.close()


async def flaky_endpoint() -> FlakyEndpoint:
    scheme = _registry.lookup("tcp")
    assert isinstance(scheme, _registry.Scheme) and scheme.listen is not None
    endpoint = await scheme.listen(URL.parse("tcp://127.0.0.1:0"), None)
    assert isinstance(endpoint, ListenerEndpoint)
    return FlakyEndpoint(endpoint)


@pytest.mark.trio
async def test_trio_serve_drops_failed_accepts_of_any_endpoint() -> None:
    endpoint = await flaky_endpoint()

    async def echo(stream: pt.Stream) -> None:
        await stream.send_all(await stream.receive_some())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            listener = OSListener(endpoint)
            await nursery.start(serve_listeners, echo, [listener])
            async with await pt.connect(listener.url) as client:
                await client.send_all(b"any endpoint")
                assert await client.receive_some() == b"any endpoint"
            assert endpoint.errors == []
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_anyio_serve_drops_failed_accepts_of_any_endpoint() -> None:
    endpoint = await flaky_endpoint()

    async def echo(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            await stream.send(await stream.receive())

    with anyio.fail_after(5):
        async with (
            AnyioOSListener(endpoint) as listener,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(listener.serve, echo)
            async with await pa.connect(listener.url) as client:
                await client.send(b"any endpoint")
                assert await client.receive() == b"any endpoint"
            assert endpoint.errors == []
            tg.cancel_scope.cancel()


# --- TCP listener options ----------------------------------------------------


def record_listen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The backlog of every listen() call from now on."""
    seen: list[int] = []
    real_listen = socket.socket.listen

    def listen(self: socket.socket, backlog: int = 0, /) -> None:
        seen.append(backlog)
        real_listen(self, backlog)

    monkeypatch.setattr(socket.socket, "listen", listen)
    return seen


BACKLOG_URLS = [
    pytest.param("tcp://127.0.0.1:0", id="tcp"),
    pytest.param("local", id="local", marks=posix_only),
]


@pytest.mark.trio
@pytest.mark.parametrize("url", BACKLOG_URLS)
async def test_huge_backlog_is_capped_like_trio(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if url == "local":
        url = f"local://{tmp_path}/b.sock"
    seen = record_listen(monkeypatch)
    # Python's listen() takes a C int: 2**40 overflowed it before the cap.
    for asked, used in [(2**40, 0xFFFF), (0x10000, 0xFFFF), (100, 100), (None, 0xFFFF)]:
        async with await pt.listen(url, backlog=asked) as listener:
            async with await pt.connect(listener.url), await listener.accept():
                pass
        assert seen[-1] == used, (asked, seen)
    with pytest.raises(TypeError, match="backlog"):
        await pt.listen(url, backlog="10")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_anyio_huge_backlog_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = record_listen(monkeypatch)
    async with await pa.listen("tcp://127.0.0.1:0", backlog=2**40) as listener:
        async with await pa.connect(listener.url), await listener.accept():
            pass
    assert seen == [0xFFFF]


@pytest.mark.trio
async def test_reuseaddr_only_where_it_means_rebinding() -> None:
    async with await pt.listen("tcp://127.0.0.1:0") as listener:
        (sock,) = listener.sockets
        value = sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        if sys.platform == "win32":  # pragma: no cover - runs on Windows
            assert value == 0
        else:
            assert value != 0


@pytest.mark.trio
async def test_listen_on_a_port_in_use_fails_everywhere() -> None:
    """Another socket listens on the port: EADDRINUSE. (On Windows our own
    SO_REUSEADDR would have let us bind it anyway, next to the other one.)"""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(OSError) as info:
            await pt.listen(f"tcp://127.0.0.1:{port}")
    assert info.value.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1))
    assert f"127.0.0.1:{port}" in str(info.value)


@posix_only
@pytest.mark.trio
async def test_posix_relisten_while_the_old_port_is_in_time_wait() -> None:
    """What SO_REUSEADDR is kept for on POSIX: restarting a server at once."""
    async with await pt.listen("tcp://127.0.0.1:0") as listener:
        url = listener.url
        client = await pt.connect(url)
        server = await listener.accept()
        await server.aclose()  # we close first: our side goes to TIME_WAIT
        assert await client.receive_some() == b""
        await client.aclose()
    async with await pt.listen(url) as again:
        assert again.url == url


def no_ipv6(monkeypatch: pytest.MonkeyPatch, *, no_ipv4: bool = False) -> None:
    """Make creating AF_INET6 (and maybe AF_INET) sockets fail as on a host
    without that family, and the wildcard resolve to both families."""
    missing = {socket.AF_INET6} | ({socket.AF_INET} if no_ipv4 else set())

    class Socket(socket.socket):
        def __init__(self, family: int = -1, *args: Any, **kwargs: Any) -> None:
            if family in missing:
                raise OSError(errno.EAFNOSUPPORT, "Address family not supported")
            super().__init__(family, *args, **kwargs)

    real_resolve = _inet.resolve

    async def resolve(url: URL, kind: int, *, passive: bool = False) -> Any:
        if passive and not url.host:  # the wildcard: both families, v6 first
            port = url.port or 0
            return [
                (socket.AF_INET6, ("::", port, 0, 0)),
                (socket.AF_INET, ("0.0.0.0", port)),
            ]
        return await real_resolve(url, kind, passive=passive)

    monkeypatch.setattr(socket, "socket", Socket)
    monkeypatch.setattr(_inet, "resolve", resolve)


@pytest.mark.trio
async def test_wildcard_listen_skips_a_missing_family(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_ipv6(monkeypatch)
    async with await pt.listen("tcp://:0") as listener:
        assert [s.family for s in listener.sockets] == [socket.AF_INET]
        assert listener.url.scheme == "tcp4"
        async with await pt.connect(f"tcp://127.0.0.1:{listener.url.port}") as c:
            async with await listener.accept() as s:
                await c.send_all(b"v4 only")
                assert await s.receive_some() == b"v4 only"
    # Asked for explicitly, a missing family is still an error naming the URL.
    with pytest.raises(OSError) as info:
        await pt.listen("tcp6://[::1]:0")
    assert info.value.errno == errno.EAFNOSUPPORT
    assert "tcp6://[::1]:0" in str(info.value)


@pytest.mark.trio
async def test_wildcard_listen_with_no_family_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_ipv6(monkeypatch, no_ipv4=True)
    with pytest.raises(OSError) as info:
        await pt.listen("tcp://:0")
    assert info.value.errno == errno.EAFNOSUPPORT
    assert "tcp://:0" in str(info.value) and "address families" in str(info.value)


@pytest.mark.anyio
async def test_anyio_wildcard_listen_skips_a_missing_family(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_ipv6(monkeypatch)
    async with await pa.listen("tcp://:0") as listener:
        assert [s.family for s in listener.sockets] == [socket.AF_INET]
        port = listener.url.port
        async with await pa.connect(f"tcp://127.0.0.1:{port}") as client:
            async with await listener.accept() as server:
                await client.send(b"v4 only")
                assert await server.receive() == b"v4 only"

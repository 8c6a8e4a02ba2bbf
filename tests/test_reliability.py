"""Reliability: descriptor hygiene under random cancellation, and peer faults.

fd hygiene: for every scheme, 1,000 cycles of listen/connect/accept/send/
receive/close, each cancelled at a random point (a canceller task counts a
random number of schedule points, then cancels the cycle, so the cancel lands
anywhere: inside a connect, an accept, a send blocked on a full buffer, a
close), and the process has exactly as many descriptors open afterwards as
before. The same for the anyio face on its asyncio and trio backends.

Peer faults: the peer process SIGKILLed mid-transfer, a TCP RST (SO_LINGER
0), the AF_UNIX equivalent (closing with unread data), a half-close, and a
peer that never reads. Each gives BrokenResourceError, end of file or a clean
cancel, within a deadline: never a hang, never an OSError of another kind,
never SIGPIPE on a socket (a recording handler is installed to prove it).
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import trio
import trio.testing

import packeteer_trio as pt
from packeteer_trio import anyio_compat as pa
from packeteer_trio._trio._listener import OSListener

from .conftest import ANYIO_BACKENDS, NoReaderLoop, has_ipv6_loopback, open_fds

LINUX = sys.platform.startswith("linux")
needs_af_unix = pytest.mark.posix_only(reason="local:// (AF_UNIX) is POSIX-only")
needs_fifo = pytest.mark.posix_only(reason="fifo:// is POSIX-only")
# The anyio face has no Windows pipes (HANDLEs on trio's IOCP) yet.
anyio_pipes = pytest.mark.posix_only(
    reason="anon:// on the anyio face is POSIX-only so far (docs/platforms.md)"
)
CYCLES = 1000
# Payload sizes: one byte, a line, a page, and more than a socket buffer
# (so that some sends block and some cancels land in a blocked send).
SIZES = [1, 64, 4096, 300_000]
_serial = iter(range(10**9))


def _unique() -> str:
    return f"{os.getpid()}-{next(_serial)}"


# --- the schemes -------------------------------------------------------------

# A scheme's cycle URL: made fresh for each cycle (paths and abstract names
# must not collide with the previous cycle's, which may still be closing).
UrlMaker = Callable[[Path], str]

STREAM_SOCKETS: list[Any] = [
    pytest.param(lambda tmp: "tcp4://127.0.0.1:0", id="tcp4"),
    pytest.param(
        lambda tmp: "tcp6://[::1]:0",
        id="tcp6",
        marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1"),
    ),
    pytest.param(
        lambda tmp: f"local://{tmp}/s{_unique()}", id="local_path", marks=needs_af_unix
    ),
    pytest.param(
        lambda tmp: f"local:///%00pt-rel-{_unique()}",
        id="local_abstract",
        marks=pytest.mark.skipif(not LINUX, reason="abstract names are Linux-only"),
    ),
]
UDP4 = pytest.param(lambda tmp: "udp4://127.0.0.1:0", id="udp4")
SCHEMES = [
    *STREAM_SOCKETS,
    pytest.param(lambda tmp: "anon://", id="anon"),
    pytest.param(lambda tmp: f"fifo://{tmp}/f{_unique()}", id="fifo", marks=needs_fifo),
    UDP4,
    pytest.param(
        lambda tmp: f"local://{tmp}/d{_unique()}?behaviour=datagram",
        id="local_datagram",
        marks=needs_af_unix,
    ),
]
ANYIO_SCHEMES = [
    pytest.param(*param.values, id=param.id, marks=anyio_pipes)
    if param.id == "anon"
    else param
    for param in SCHEMES
]


def _kind(url: str) -> str:
    if url.startswith("anon:"):
        return "anon"
    if url.startswith("fifo:"):
        return "fifo"
    if url.startswith("udp") or "behaviour=datagram" in url:
        return "datagram"
    return "stream"


def _client_url(url: str) -> str:
    """A second datagram address next to *url* (same kind, its own name)."""
    if url.startswith("udp"):
        return url
    head, _, name = url.rpartition("/")
    return f"{head}/c{name}"


def _plan(rng: random.Random) -> tuple[int | None, int, bool]:
    """(schedule points before the cancel or None, payload size, early close)."""
    cancel_at = None if rng.random() < 0.15 else rng.randrange(30)
    return cancel_at, rng.choice(SIZES), rng.random() < 0.2


# --- the trio face -----------------------------------------------------------


async def _cancel_after(scope: trio.CancelScope, steps: int) -> None:
    for _ in range(steps):
        await trio.lowlevel.checkpoint()
    scope.cancel()


async def _receive_exactly(stream: pt.Stream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def _trio_stream_cycle(url: str, size: int, early: bool) -> None:
    """listen, connect, accept, echo *size* bytes, half-close, close."""
    payload = b"x" * size
    async with await pt.listen(url) as listener:

        async def serve_one() -> None:
            async with await listener.accept() as stream:
                if early:  # the peer leaves mid-conversation
                    await stream.receive_some()
                    return
                while data := await stream.receive_some():
                    await stream.send_all(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_one)
            async with await pt.connect(listener.url) as client:

                async def send() -> None:
                    try:
                        await client.send_all(payload)
                    except trio.BrokenResourceError:
                        assert early, "only a peer that left may break the stream"

                async with trio.open_nursery() as inner:
                    inner.start_soon(send)
                    try:
                        echoed = await _receive_exactly(client, size)
                        await client.send_eof()
                        rest = await client.receive_some()
                    except trio.BrokenResourceError:
                        assert early, "only a peer that left may break the stream"
                        return
                assert early or (echoed, rest) == (payload, b"")


async def _trio_anon_cycle(url: str, size: int, early: bool) -> None:
    payload = b"a" * size
    async with await pt.connect(url) as stream:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, payload)
            assert await _receive_exactly(stream, size) == payload
        if early:
            await stream.send_eof()
            assert await stream.receive_some() == b""


async def _trio_fifo_cycle(url: str, size: int, early: bool) -> None:
    payload = b"f" * size
    async with await pt.listen(url) as listener:
        async with await listener.accept() as reader:
            async with trio.open_nursery() as nursery:

                async def write() -> None:
                    async with await pt.connect(url) as writer:
                        try:
                            await writer.send_all(payload)
                        except trio.BrokenResourceError:
                            assert early  # the reader left first

                nursery.start_soon(write)
                if early:
                    await reader.receive_some()
                    await reader.aclose()
                    return
                got = await _receive_exactly(reader, size)
                assert got == payload
                assert await reader.receive_some() == b""


async def _trio_datagram_cycle(url: str, size: int, early: bool) -> None:
    count = 1 + size % 5
    async with (
        await pt.open_datagram(url) as server,
        await pt.open_datagram(_client_url(url)) as client,
    ):

        async def echo() -> None:
            for _ in range(count):
                data, sender = await server.receive_from()
                await server.send_to(data, sender)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            for index in range(count):
                await client.send_to(b"%d" % index, server.url)
                assert await client.receive_from() == (b"%d" % index, server.url)


TRIO_CYCLES: dict[str, Callable[[str, int, bool], Awaitable[None]]] = {
    "stream": _trio_stream_cycle,
    "anon": _trio_anon_cycle,
    "fifo": _trio_fifo_cycle,
    "datagram": _trio_datagram_cycle,
}


@pytest.mark.parametrize("make_url", SCHEMES)
def test_fd_hygiene_trio(
    make_url: UrlMaker, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cycle = TRIO_CYCLES[_kind(make_url(tmp_path))]
    rng = random.Random(request.node.name)
    outcomes = {"completed": 0, "cancelled": 0}

    async def main() -> tuple[int, int]:
        await cycle(make_url(tmp_path), 10, False)  # warm up lazy resources
        before = open_fds()
        with trio.fail_after(120):
            for _ in range(CYCLES):
                cancel_at, size, early = _plan(rng)
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        if cancel_at is not None:
                            nursery.start_soon(_cancel_after, scope, cancel_at)
                        await cycle(make_url(tmp_path), size, early)
                        nursery.cancel_scope.cancel()
                key = "cancelled" if scope.cancelled_caught else "completed"
                outcomes[key] += 1
        return before, open_fds()

    started = time.perf_counter()
    before, after = trio.run(main)
    _figure(
        "fd hygiene", "trio", request.node.callspec.id, before, after, outcomes, started
    )
    assert after == before
    assert not list(tmp_path.iterdir()), "every socket file and FIFO is removed"
    assert outcomes["cancelled"] >= CYCLES // 10
    assert outcomes["completed"] >= CYCLES // 10


def _figure(
    title: str,
    face: str,
    scheme: str,
    before: int,
    after: int,
    outcomes: dict[str, int],
    started: float,
) -> None:
    print(
        f"\nFIGURE {title} [{face}] {scheme}: {CYCLES} cycles "
        f"({outcomes['cancelled']} cancelled, {outcomes['completed']} completed), "
        f"fds {before} -> {after}, {time.perf_counter() - started:.2f} s"
    )


# --- the anyio face ----------------------------------------------------------


@pytest.fixture(params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


async def _anyio_cancel_after(scope: anyio.CancelScope, steps: int) -> None:
    for _ in range(steps):
        await anyio.lowlevel.checkpoint()
    scope.cancel()


async def _anyio_receive_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        try:
            data += await stream.receive()
        except anyio.EndOfStream:
            break
    return bytes(data)


async def _anyio_stream_cycle(url: str, size: int, early: bool) -> None:
    payload = b"x" * size
    async with await pa.listen(url) as listener:

        async def serve_one() -> None:
            async with await listener.accept() as stream:
                if early:
                    await stream.receive()
                    return
                try:
                    while True:
                        await stream.send(await stream.receive())
                except anyio.EndOfStream:
                    pass

        async with anyio.create_task_group() as group:
            group.start_soon(serve_one)
            async with await pa.connect(listener.url) as client:

                async def send() -> None:
                    try:
                        await client.send(payload)
                    except anyio.BrokenResourceError:
                        assert early, "only a peer that left may break the stream"

                async with anyio.create_task_group() as inner:
                    inner.start_soon(send)
                    try:
                        echoed = await _anyio_receive_exactly(client, size)
                        await client.send_eof()
                        with pytest.raises(anyio.EndOfStream):
                            await client.receive()
                    except anyio.BrokenResourceError:
                        assert early, "only a peer that left may break the stream"
                        return
                assert early or echoed == payload


async def _anyio_anon_cycle(url: str, size: int, early: bool) -> None:
    payload = b"a" * size
    async with await pa.connect(url) as stream:
        async with anyio.create_task_group() as group:
            group.start_soon(stream.send, payload)
            assert await _anyio_receive_exactly(stream, size) == payload


async def _anyio_fifo_cycle(url: str, size: int, early: bool) -> None:
    payload = b"f" * size
    async with await pa.listen(url) as listener:
        async with await listener.accept() as reader:
            async with anyio.create_task_group() as group:

                async def write() -> None:
                    async with await pa.connect(url) as writer:
                        try:
                            await writer.send(payload)
                        except anyio.BrokenResourceError:
                            assert early

                group.start_soon(write)
                if early:
                    await reader.receive()
                    await reader.aclose()
                    return
                assert await _anyio_receive_exactly(reader, size) == payload


async def _anyio_datagram_cycle(url: str, size: int, early: bool) -> None:
    count = 1 + size % 5
    async with (
        await pa.open_datagram(url) as server,
        await pa.open_datagram(_client_url(url)) as client,
    ):

        async def echo() -> None:
            for _ in range(count):
                await server.send(await server.receive())

        async with anyio.create_task_group() as group:
            group.start_soon(echo)
            for index in range(count):
                await client.send((b"%d" % index, server.url))
                assert await client.receive() == (b"%d" % index, server.url)


ANYIO_CYCLES: dict[str, Callable[[str, int, bool], Awaitable[None]]] = {
    "stream": _anyio_stream_cycle,
    "anon": _anyio_anon_cycle,
    "fifo": _anyio_fifo_cycle,
    "datagram": _anyio_datagram_cycle,
}


@pytest.mark.anyio
@pytest.mark.parametrize("make_url", ANYIO_SCHEMES)
async def test_fd_hygiene_anyio(
    make_url: UrlMaker,
    tmp_path: Path,
    anyio_backend: Any,
    request: pytest.FixtureRequest,
) -> None:
    await _anyio_fd_hygiene(make_url, tmp_path, f"anyio/{anyio_backend}", request)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("asyncio", {"loop_factory": NoReaderLoop}), id="asyncio")],
)
@pytest.mark.parametrize(
    "make_url", [p for p in STREAM_SOCKETS if p.id in ("tcp4", "tcp6")] + [UDP4]
)
async def test_fd_hygiene_anyio_selector_thread(
    make_url: UrlMaker,
    tmp_path: Path,
    anyio_backend: Any,
    request: pytest.FixtureRequest,
) -> None:
    """The anyio face on an asyncio loop without add_reader, as Windows'
    proactor loop, on every platform: sockets are watched from a selector
    thread. anyio's own thread lost wakeups here (a wait hung when a
    descriptor number was reused while a select() result was still being
    handled), and so did this test, on Linux too."""
    face = "anyio/asyncio, selector thread"
    await _anyio_fd_hygiene(make_url, tmp_path, face, request)


async def _anyio_fd_hygiene(
    make_url: UrlMaker, tmp_path: Path, face: str, request: pytest.FixtureRequest
) -> None:
    cycle = ANYIO_CYCLES[_kind(make_url(tmp_path))]
    rng = random.Random(request.node.name)
    outcomes = {"completed": 0, "cancelled": 0}
    started = time.perf_counter()
    with _loop_errors() as errors:
        await cycle(make_url(tmp_path), 10, False)  # warm up lazy resources
        await _settle()
        before = open_fds()
        with anyio.fail_after(120):
            for _ in range(CYCLES):
                cancel_at, size, early = _plan(rng)
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as group:
                        if cancel_at is not None:
                            group.start_soon(_anyio_cancel_after, scope, cancel_at)
                        await cycle(make_url(tmp_path), size, early)
                        group.cancel_scope.cancel()
                key = "cancelled" if scope.cancelled_caught else "completed"
                outcomes[key] += 1
        await _settle()
        after = open_fds()
    _figure(
        "fd hygiene",
        face,
        request.node.callspec.id,
        before,
        after,
        outcomes,
        started,
    )
    assert after == before
    assert not list(tmp_path.iterdir()), "every socket file and FIFO is removed"
    assert outcomes["cancelled"] >= CYCLES // 10
    assert outcomes["completed"] >= CYCLES // 10
    # No InvalidStateError (a callback set_result() on a future a cancellation
    # had cancelled: anyio's own asyncio UNIXSocketStream did), nor anything
    # else reported to the loop's exception handler.
    assert errors == []


@contextmanager
def _loop_errors() -> Iterator[list[dict[str, Any]]]:
    """Everything reported to the asyncio loop's exception handler meanwhile."""
    caught: list[dict[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # the trio backend
        yield caught
        return
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda loop, context: caught.append(context))
    try:
        yield caught
    finally:
        loop.set_exception_handler(previous)


async def _settle() -> None:
    """Let asyncio run the transport closes it scheduled with call_soon."""
    for _ in range(3):
        await anyio.sleep(0)


# --- peer faults -------------------------------------------------------------


@pytest.fixture
def sigpipes() -> Iterator[list[int]]:
    """Record every SIGPIPE this process gets while the test runs (Windows
    has no SIGPIPE: nothing to record)."""
    caught: list[int] = []
    if sys.platform == "win32":
        yield caught
        return
    previous = signal.signal(
        signal.SIGPIPE, lambda number, frame: caught.append(number)
    )
    try:
        yield caught
    finally:
        signal.signal(signal.SIGPIPE, previous)


STREAM_URLS: list[Any] = [
    pytest.param("tcp4://127.0.0.1:0", id="tcp4"),
    pytest.param(
        "tcp6://[::1]:0",
        id="tcp6",
        marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1"),
    ),
    pytest.param("local", id="local", marks=needs_af_unix),
]
# A TCP reset (SO_LINGER 0 on close) where Wine sends none.
wine_no_reset = pytest.mark.wine_differs(
    reason="Wine 8 closes a socket with SO_LINGER {1, 0} gracefully: the peer "
    "reads end of file where Windows (and Linux) give it a reset "
    "(WSAECONNRESET)"
)
RESET_URLS: list[Any] = [
    pytest.param(*param.values, id=param.id, marks=[*param.marks, wine_no_reset])
    if param.id != "local"
    else param
    for param in STREAM_URLS
]


def _url(kind: str, tmp_path: Path) -> str:
    return f"local://{tmp_path}/peer.sock" if kind == "local" else kind


async def _pair(url: str) -> tuple[pt.Stream, pt.Stream]:
    async with await pt.listen(url) as listener:
        client = await pt.connect(listener.url)
        server = await listener.accept()
    return client, server


# The peer process: plain sockets (or a FIFO), no trio, killed from outside.
_PEER = textwrap.dedent(
    """
    import os, socket, sys, time
    kind, address, role = sys.argv[1], sys.argv[2], sys.argv[3]
    if kind == "fifo":
        fd = os.open(address, os.O_WRONLY if role == "send" else os.O_RDONLY)
        write = lambda data: os.write(fd, data)
        read = lambda: os.read(fd, 65536)
    else:
        if kind == "local":
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(address)
        else:
            host, port = address.rsplit(":", 1)
            sock = socket.create_connection((host.strip("[]"), int(port)))
        write, read = sock.send, lambda: sock.recv(65536)
    print("ready", flush=True)
    if role == "send":
        while True:
            write(b"s" * 65536)
    else:
        read()  # take a little, then stop reading: our sends fill up and block
        time.sleep(3600)
    """
)


def _address(url: pt.URL) -> str:
    if url.scheme in ("local", "fifo"):
        return url.path
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}"


@asynccontextmanager
async def _peer_process(
    kind: str, url: pt.URL, role: str
) -> AsyncIterator[Callable[[], None]]:
    """Run the peer; yield what kills it (SIGKILL; TerminateProcess on
    Windows); always reap it."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-S", "-c", _PEER, kind, _address(url), role],
        stdout=subprocess.DEVNULL,
    )
    alive = [process]

    def kill() -> None:
        for peer in alive:
            peer.kill()

    try:
        yield kill
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        alive.clear()  # the caller's kill() must not keep the process handle


@pytest.mark.trio
@pytest.mark.parametrize(
    "kind",
    [
        "tcp4",
        pytest.param("local", marks=needs_af_unix),
        pytest.param("fifo", marks=needs_fifo),
    ],
)
@pytest.mark.parametrize("role", ["send", "receive"])
async def test_peer_killed_mid_transfer(
    kind: str, role: str, tmp_path: Path, sigpipes: list[int]
) -> None:
    """SIGKILL the peer while bytes flow: EOF or BrokenResourceError, at once."""
    urls = {
        "tcp4": "tcp4://127.0.0.1:0",
        "local": f"local://{tmp_path}/k.sock",
        "fifo": f"fifo://{tmp_path}/k.fifo",
    }
    # The peer sends and we receive, or it stops reading while we send.
    peer_role = "send" if role == "receive" else "receive"
    await trio.run_process([sys.executable, "-c", "pass"])  # lazy resources exist
    before = open_fds()
    with trio.fail_after(20):
        if kind == "fifo" and role == "send":
            # We write into a FIFO whose only reader is the peer.
            url = pt.URL.parse(urls[kind])
            if sys.platform != "win32":  # for mypy: the fifo case is POSIX-only
                os.mkfifo(url.path)
            async with _peer_process(kind, url, peer_role) as kill:
                async with await _connect_when_read(url) as stream:
                    await _kill_while_sending(stream, kill)
        else:
            async with await pt.listen(urls[kind]) as listener:
                async with _peer_process(kind, listener.url, peer_role) as kill:
                    async with await listener.accept() as stream:
                        if role == "receive":
                            await _kill_while_receiving(stream, kill)
                        else:
                            await _kill_while_sending(stream, kill)
    assert open_fds() == before
    if kind != "fifo":
        assert sigpipes == [], "a socket never raises SIGPIPE"


async def _connect_when_read(url: pt.URL) -> pt.Stream:
    """Connect to a FIFO as soon as its reader (the peer) has opened it."""
    while True:
        try:
            return await pt.connect(url)
        except ConnectionRefusedError:  # the peer has not opened it yet
            await trio.sleep(0.01)


async def _kill_while_receiving(stream: pt.Stream, kill: Callable[[], None]) -> None:
    received = 0
    while received < 1 << 20:  # mid-transfer: a megabyte in
        received += len(await stream.receive_some())
    kill()
    try:
        while await stream.receive_some():
            pass  # what was in flight, then end of file
    except trio.BrokenResourceError:
        pass  # or the kernel says the connection was reset


async def _kill_while_sending(stream: pt.Stream, kill: Callable[[], None]) -> None:
    async with trio.open_nursery() as nursery:

        async def kill_when_blocked() -> None:
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            kill()

        nursery.start_soon(kill_when_blocked)
        with pytest.raises(trio.BrokenResourceError):
            while True:
                await stream.send_all(b"m" * 65536)


@pytest.mark.trio
@pytest.mark.parametrize("kind", RESET_URLS)
async def test_peer_reset(kind: str, tmp_path: Path, sigpipes: list[int]) -> None:
    """An RST (TCP: SO_LINGER 0; AF_UNIX: closing with unread data) breaks
    both directions: BrokenResourceError, never a raw OSError or a hang."""
    with trio.fail_after(10):
        client, server = await _pair(_url(kind, tmp_path))
        async with client:
            await client.send_all(b"unread")  # AF_UNIX resets only with this
            await trio.testing.wait_all_tasks_blocked()
            if isinstance(server, pt.SocketStream) and kind != "local":
                server.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            await server.aclose()
            with pytest.raises(trio.BrokenResourceError):
                await client.receive_some()
            with pytest.raises(trio.BrokenResourceError):
                for _ in range(100):  # the first send may still be accepted
                    await client.send_all(b"after reset")
            await client.send_eof()  # on a reset connection: a no-op, no error
    assert sigpipes == []


@pytest.mark.trio
@pytest.mark.parametrize("kind", STREAM_URLS)
async def test_peer_half_closes(kind: str, tmp_path: Path, sigpipes: list[int]) -> None:
    """EOF after the peer's send_eof, every time; our direction still works;
    once the peer is gone entirely, sending breaks cleanly."""
    with trio.fail_after(10):
        client, server = await _pair(_url(kind, tmp_path))
        async with client, server:
            await server.send_all(b"last words")
            await server.send_eof()
            assert await _receive_exactly(client, 10) == b"last words"
            for _ in range(3):
                assert await client.receive_some() == b""
            await client.send_all(b"still heard")
            assert await _receive_exactly(server, 11) == b"still heard"
            await server.aclose()
            with pytest.raises(trio.BrokenResourceError):
                for _ in range(100):
                    await client.send_all(b"x" * 1000)
    assert sigpipes == []


@pytest.mark.trio
async def test_anon_half_closes() -> None:
    """anon: the writer's close is the reader's end of file."""
    with trio.fail_after(10):
        async with await pt.connect("anon://") as stream:
            await stream.send_all(b"bye")
            await stream.send_eof()
            assert await stream.receive_some() == b"bye"
            assert await stream.receive_some() == b""


@needs_fifo
@pytest.mark.trio
async def test_fifo_half_closes(tmp_path: Path) -> None:
    """fifo: the writer's close is the reader's end of file."""
    with trio.fail_after(10):
        async with await pt.listen(f"fifo://{tmp_path}/h") as listener:
            async with await listener.accept() as reader:
                async with await pt.connect(listener.url) as writer:
                    await writer.send_all(b"bye")
                assert await reader.receive_some() == b"bye"
                assert await reader.receive_some() == b""
                # The FIFO's writer side goes away for good when the reader does.
                writer = await pt.connect(listener.url)
            async with writer:
                with pytest.raises(trio.BrokenResourceError):
                    await writer.send_all(b"nobody reads")


@pytest.mark.trio
@pytest.mark.parametrize(
    "kind", [*STREAM_URLS, "anon", pytest.param("fifo", marks=needs_fifo)]
)
async def test_peer_never_reads_then_cancel(
    kind: str, tmp_path: Path, sigpipes: list[int]
) -> None:
    """A send blocked on a peer that never reads is cancelled promptly, and
    closing afterwards leaks nothing."""
    before = open_fds()
    with trio.fail_after(10):
        if kind == "anon":
            sender = receiver = await pt.connect("anon://")
        elif kind == "fifo":
            listener = await pt.listen(f"fifo://{tmp_path}/n")
            receiver = await listener.accept()
            sender = await pt.connect(listener.url)
            await listener.aclose()
        else:
            sender, receiver = await _pair(_url(kind, tmp_path))
        started = trio.current_time()
        with trio.move_on_after(0.2) as scope:
            await sender.send_all(b"z" * (16 << 20))  # far beyond any buffer
        assert scope.cancelled_caught
        assert trio.current_time() - started < 5
        await sender.aclose()
        await receiver.aclose()
    assert open_fds() == before
    if kind not in ("anon", "fifo"):
        assert sigpipes == []


# --- peer faults through the anyio face ---------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", RESET_URLS)
async def test_anyio_peer_reset_and_half_close(
    kind: str, tmp_path: Path, anyio_backend: Any, sigpipes: list[int]
) -> None:
    url = _url(kind, tmp_path)
    with anyio.fail_after(10):
        # Half-close: EndOfStream, while our direction keeps working.
        async with await pa.listen(url) as listener:
            client = await pa.connect(listener.url)
            server = await listener.accept()
        async with client, server:
            await server.send(b"end")
            await server.send_eof()
            assert await _anyio_receive_exactly(client, 3) == b"end"
            with pytest.raises(anyio.EndOfStream):
                await client.receive()
            await client.send(b"ok")
            assert await _anyio_receive_exactly(server, 2) == b"ok"
        # Reset: BrokenResourceError in both directions.
        async with await pa.listen(url) as listener:
            client = await pa.connect(listener.url)
            server = await listener.accept()
        async with client:
            await client.send(b"unread")
            await anyio.sleep(0.01)
            raw = server.extra(anyio.abc.SocketAttribute.raw_socket)
            if kind != "local":
                raw.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            await server.aclose()
            await anyio.sleep(0.01)
            with pytest.raises(anyio.BrokenResourceError):
                await client.receive()
            with pytest.raises(anyio.BrokenResourceError):
                for _ in range(100):
                    await client.send(b"after reset")
                    await anyio.sleep(0)
    assert sigpipes == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kind", [*STREAM_URLS, pytest.param("anon", marks=anyio_pipes)]
)
async def test_anyio_peer_never_reads_then_cancel(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """The peer is a plain socket that never reads. (An anyio stream on
    asyncio would not do: its transport keeps reading into memory whether
    or not anyone calls receive(), so the sender never blocks.)"""
    peer: socket.socket | None = None
    with anyio.fail_after(10):
        if kind == "anon":
            sender = await pa.connect("anon://")
        else:
            url = pt.URL.parse(_url(kind, tmp_path))
            family = socket.AF_INET6 if url.scheme == "tcp6" else socket.AF_INET
            if url.scheme == "local" and sys.platform != "win32":  # POSIX-only
                family = socket.AF_UNIX
            with socket.socket(family) as raw_listener:
                if url.scheme == "local":
                    raw_listener.bind(url.path)
                else:
                    raw_listener.bind((url.host, 0))
                    url = url.replace(port=raw_listener.getsockname()[1])
                raw_listener.listen()
                sender = await pa.connect(url)
                peer, _ = raw_listener.accept()
        await _settle()
        before = open_fds()
        with anyio.move_on_after(0.2) as scope:
            await sender.send(b"z" * (16 << 20))
        assert scope.cancelled_caught
        await sender.aclose()
        if peer is not None:
            peer.close()
        await _settle()
    assert open_fds() == before - 2  # two sockets, or the pipe's two ends


# --- serve(): trio.serve_listeners' contract, kept by our own loop -------------


@needs_af_unix
@pytest.mark.trio
async def test_serve_closes_everything_on_the_way_out(tmp_path: Path) -> None:
    """Cancelled: the listener is closed (its socket file removed) and a
    stream a handler left open is closed for it. A handler's exception comes
    out of the nursery and takes the server down the same way."""
    url = f"local://{tmp_path}/serve.sock"
    before = open_fds()
    left_open: list[pt.Stream] = []

    async def lazy(stream: pt.Stream) -> None:
        left_open.append(stream)  # never closes it

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(pt.serve, url, lazy)
        assert [type(listener) for listener in listeners] == [OSListener]
        async with await pt.connect(url):
            await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert not (tmp_path / "serve.sock").exists()
    with pytest.raises(trio.ClosedResourceError):
        await left_open[0].send_all(b"x")
    assert open_fds() == before

    async def broken(stream: pt.Stream) -> None:
        raise RuntimeError("handler failed")

    with pytest.RaisesGroup(RuntimeError, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(pt.serve, url, broken)
            async with await pt.connect(url) as stream:
                await stream.receive_some()
                await trio.sleep_forever()
    assert not (tmp_path / "serve.sock").exists()
    assert open_fds() == before


@needs_af_unix
@pytest.mark.trio
async def test_serve_uses_the_handler_nursery(tmp_path: Path) -> None:
    """With handler_nursery, handlers outlive the server's own cancellation."""
    url = f"local://{tmp_path}/h.sock"
    got = trio.Event()

    async def slow(stream: pt.Stream) -> None:
        await trio.sleep(0.05)
        await stream.send_all(b"still here")
        got.set()

    async with trio.open_nursery() as handlers:
        async with trio.open_nursery() as server:
            await server.start(
                functools.partial(pt.serve, url, slow, handler_nursery=handlers)
            )
            client = await pt.connect(url)
            await trio.testing.wait_all_tasks_blocked()
            server.cancel_scope.cancel()  # the server stops; the handler goes on
        async with client:
            assert await client.receive_some() == b"still here"
    assert got.is_set()

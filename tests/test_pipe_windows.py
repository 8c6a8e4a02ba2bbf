r"""pipe:// and anon:// on Windows, local:// and fifo:// there; pure parts everywhere.

Three kinds of test:

* pure (name mapping, URL errors, platform decisions, error translation, the
  Windows modules staying unloaded on POSIX): run on every platform;
* named-pipe tests, parametrized over two kernels:
  ``windows-kernel`` runs them against the real thing and is skipped off
  Windows with the reason; ``simulated-kernel`` runs the very same tests on
  POSIX against ``tests/_win32_sim.py``, a model of named pipes and of trio's
  IOCP, so that every line of the Windows modules runs in Linux CI too (what
  that does and does not prove is said there and in docs/platforms.md);
* a few real-Windows-only checks (``URL.parse`` of fifo:// and local://).
"""

from __future__ import annotations

import errno
import functools
import importlib
import os
import secrets
import subprocess
import sys
import textwrap
import types
from collections.abc import Awaitable, Callable, Iterator
from typing import cast

import pytest
import trio
import trio.testing

import packeteer_trio as pt
from packeteer_trio import URL, Events, InvalidURL, PacketeerError, UnsupportedScheme
from packeteer_trio._registry import Scheme
from packeteer_trio._url import _split
from packeteer_trio.schemes import fifo, local, pipe

from . import _win32_sim
from .conftest import open_fds

WINDOWS = sys.platform == "win32"
NOT_WINDOWS = "named pipes need Windows; this platform runs the simulated kernel"
DEADLINE = 30

# -- pure: every platform ------------------------------------------------------


def checked(text: str) -> URL:
    """*text* through pipe://'s own rules, on any platform (URL.parse would stop
    at UnsupportedScheme off Windows)."""
    return pipe.validate(_split(text), text)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("pipe:///foo", r"\\.\pipe\foo"),
        ("pipe:///a/b", r"\\.\pipe\a\b"),
        ("pipe:///a/b/c", r"\\.\pipe\a\b\c"),
        ("pipe:///with%20space", r"\\.\pipe\with space"),
        ("PIPE:///Mixed.Case-1", r"\\.\pipe\Mixed.Case-1"),
    ],
)
def test_name_mapping(text: str, name: str) -> None:
    assert pipe.windows_name(checked(text)) == name


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("pipe://host/x", "not a host"),
        ("pipe://host:80/x", "not a host"),
        ("pipe://", "needs a name"),
        ("pipe:///", "needs a name"),
        ("pipe:///a%00b", "NUL"),
        ("pipe:///" + "n" * 257, "257 characters"),
        ("pipe:///../C:/Windows/win.ini", "only dots"),
        ("pipe:///a/./b", "only dots"),
        ("pipe:///a/.../b", "only dots"),
        ("pipe:///a/.%20/b", "only dots"),
        ("pipe:///a//b", "empty parts"),
        ("pipe:///a/", "empty parts"),
        ("pipe:///a%5C..%5Cb", "only dots"),
    ],
)
def test_bad_pipe_urls(text: str, match: str) -> None:
    with pytest.raises(InvalidURL, match=match) as info:
        checked(text)
    assert repr(text[:40]).rstrip("'") in str(info.value)


def test_longest_name_is_fine() -> None:
    assert pipe.windows_name(checked("pipe:///" + "n" * 256)).endswith("n" * 256)


@pytest.mark.skipif(WINDOWS, reason="pipe:// is supported on Windows")
def test_pipe_unsupported_on_posix_names_local_and_fifo() -> None:
    with pytest.raises(UnsupportedScheme) as info:
        URL.parse("pipe:///name")
    assert "local://" in str(info.value)
    assert "fifo://" in str(info.value)
    assert "'pipe:///name'" in str(info.value)


def test_pipe_platform_decision() -> None:
    assert pipe.unsupported_reason("win32") is None
    for platform in ("linux", "darwin", "freebsd14"):
        reason = pipe.unsupported_reason(platform)
        assert reason is not None and "local://" in reason and "fifo://" in reason


def test_fifo_on_windows_is_unsupported_naming_pipe() -> None:
    windows = fifo.scheme_for("win32")
    with pytest.raises(UnsupportedScheme, match=r"pipe:///name"):
        windows.check(_split("fifo:///tmp/x"), "fifo:///tmp/x")
    posix = fifo.scheme_for("linux")
    assert posix.unsupported is None and posix.connect and posix.listen


def test_local_without_af_unix_is_unsupported_naming_pipe() -> None:
    assert local.unsupported_reason(True) is None
    reason = local.unsupported_reason(False)
    assert reason is not None and "pipe:///" in reason and "77589" in reason
    scheme = Scheme("local", unsupported=reason)
    with pytest.raises(UnsupportedScheme, match="AF_UNIX"):
        scheme.check(_split("local:///x.sock"), "local:///x.sock")


def test_anon_pipe_names_are_unique_and_well_formed() -> None:
    first = pipe.anon_pipe_name(0x1234, 1, "ab" * 8)
    assert first == r"\\.\pipe\packeteer-anon.00001234.00000001." + "ab" * 8
    second = pipe.anon_pipe_name(0x1234, 2, "cd" * 8)
    assert first != second
    assert len(first) - len(pipe.PREFIX) <= pipe.MAX_NAME_CHARS


@pytest.mark.parametrize(
    ("winerror", "action", "cls", "number", "words"),
    [
        (2, "connect", FileNotFoundError, errno.ENOENT, "is anything listening"),
        (5, "listen", OSError, errno.EADDRINUSE, "already exists"),
        (231, "accept", OSError, errno.EMFILE, "all instances"),
        (231, "listen", OSError, errno.EMFILE, "all instances"),
        (5, "connect", PermissionError, errno.EACCES, "Access is denied"),
        (109, "connect", BrokenPipeError, errno.EPIPE, "WinError 109"),
        (123, "connect", OSError, errno.EINVAL, "WinError 123"),
        (4242, "connect", OSError, None, "WinError 4242"),
    ],
)
def test_win32_errors_become_the_usual_oserrors(
    winerror: int, action: str, cls: type[OSError], number: int | None, words: str
) -> None:
    exc = pipe.pipe_error(winerror, "Access is denied.", "pipe:///x", action)
    assert isinstance(exc, cls)
    assert exc.errno == number
    assert "pipe:///x" in str(exc) and f"{action} failed" in str(exc)
    assert words in str(exc)


@pytest.mark.skipif(WINDOWS, reason="checks that POSIX never loads the Windows code")
def test_windows_modules_are_never_loaded_on_posix() -> None:
    script = textwrap.dedent(
        """
        import sys, trio
        import packeteer_trio as pt
        for text in ("anon://", "fifo:///tmp/x", "local:///tmp/x", "tcp://h:1"):
            pt.URL.parse(text)
        try:
            pt.URL.parse("pipe:///x")
        except pt.UnsupportedScheme:
            pass
        async def main():
            async with await pt.connect("anon://") as s:
                await s.send_all(b"x")
                assert await s.receive_some() == b"x"
        trio.run(main)
        loaded = [m for m in sys.modules if "windows" in m or "_win32" in m]
        print(sorted(m for m in loaded if m.startswith("packeteer_trio")))
        for name in ("packeteer_trio._win32", "packeteer_trio._trio._stream_windows",
                     "packeteer_trio.schemes._pipe_windows"):
            try:
                __import__(name)
            except ImportError as exc:
                assert "Windows only" in str(exc), exc
            else:
                raise AssertionError(name + " imported on POSIX")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- named pipes: the real kernel on Windows, the simulated one elsewhere --------


class Env:
    """What a named-pipe test needs from its kernel."""

    def __init__(self, sim: _win32_sim.Simulated | None) -> None:
        self.sim = sim

    def url(self) -> str:
        return f"pipe:///packeteer-test-{os.getpid()}-{secrets.token_hex(6)}"

    def handle_count(self) -> int:
        if self.sim is not None:
            return len(self.sim.kernel.open_handles())
        return open_fds()  # pragma: no cover


@pytest.fixture(params=["windows-kernel", "simulated-kernel"])
def env(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    if request.param == "windows-kernel":
        if not WINDOWS:
            pytest.skip(NOT_WINDOWS)
        yield Env(None)  # pragma: no cover
        return  # pragma: no cover
    if WINDOWS:  # pragma: no cover
        pytest.skip("the simulated kernel stands in for Windows on POSIX only")
    pytest.importorskip("_cffi_backend", reason="the simulation uses trio's cffi FFI")
    sim = _win32_sim.load(monkeypatch)
    try:
        yield Env(sim)
        sim.check_clean()
    finally:
        _win32_sim.unload()


def deadline(
    test: Callable[[Env], Awaitable[None]],
) -> Callable[[Env], Awaitable[None]]:
    """Fail a named-pipe test after DEADLINE seconds instead of hanging CI."""

    @functools.wraps(test)
    async def run(env: Env) -> None:
        with trio.fail_after(DEADLINE):
            await test(env)

    return run


@pytest.mark.trio
@deadline
async def test_a_pipe_listener_cannot_be_detached(env: Env) -> None:
    """No socket to hand to hypercorn or uvicorn: PacketeerError, and the
    listener goes on accepting (docs/asgi.md, Windows)."""
    async with await pt.listen(env.url()) as listener:
        with pytest.raises(PacketeerError, match="no socket to hand over"):
            listener.detach()
        async with await pt.connect(listener.url) as client:
            async with await listener.accept() as server:
                await client.send_all(b"still listening")
                assert await server.receive_some() == b"still listening"


async def pipe_pair(url: str) -> tuple[pt.Stream, pt.Stream]:
    async with await pt.listen(url) as listener:
        client = await pt.connect(listener.url)
        server = await listener.accept()
    return client, server


@pytest.mark.trio
@deadline
async def test_round_trip(env: Env) -> None:
    url = env.url()
    async with await pt.listen(url) as listener:
        assert listener.url == URL.parse(url)
        async with await pt.connect(listener.url) as client:
            async with await listener.accept() as server:
                assert client.url == server.url == URL.parse(url)
                await client.send_all(b"hello")
                assert await server.receive_some() == b"hello"
                await server.send_all(b"world")
                assert await client.receive_some() == b"world"
                assert client.local_address == client.peer_address == client.url


@pytest.mark.trio
@deadline
async def test_half_closeable_conformance(env: Env) -> None:
    url = env.url()

    async def maker() -> tuple[pt.Stream, pt.Stream]:
        return await pipe_pair(url)

    await trio.testing.check_half_closeable_stream(maker, None)


@pytest.mark.trio
@deadline
async def test_send_eof_keeps_the_other_direction_open(env: Env) -> None:
    client, server = await pipe_pair(env.url())
    async with client, server:
        await client.send_all(b"request")
        await client.send_eof()
        assert await server.receive_some() == b"request"
        assert await server.receive_some() == b""
        assert await server.receive_some() == b""  # end of file stays
        await server.send_all(b"reply")
        await server.send_eof()
        assert await client.receive_some() == b"reply"
        assert await client.receive_some() == b""
        with pytest.raises(trio.ClosedResourceError, match="send_eof"):
            await client.send_all(b"more")


@pytest.mark.trio
@deadline
async def test_big_writes_arrive_through_small_reads(env: Env) -> None:
    # A message bigger than the reader's buffer comes in pieces (ERROR_MORE_DATA).
    client, server = await pipe_pair(env.url())
    data = secrets.token_bytes(300_000)
    got = bytearray()
    async with client, server, trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, data)
        buffer = bytearray(1000)
        while len(got) < len(data):
            count = await server.receive_into(buffer)
            assert count
            got += buffer[:count]
    assert got == data


@pytest.mark.trio
@deadline
async def test_anon_reads_back_and_conforms(env: Env) -> None:
    async with await pt.connect("anon://") as stream:
        assert stream.url == URL.parse("anon://")
        await stream.send_all(b"ping")
        assert await stream.receive_some() == b"ping"
        await stream.send_eof()
        assert await stream.receive_some() == b""

    async def maker() -> tuple[trio.abc.SendStream, trio.abc.ReceiveStream]:
        stream = await pt.connect("anon://")
        halves = stream.split()  # type: ignore[attr-defined]
        return cast("tuple[trio.abc.SendStream, trio.abc.ReceiveStream]", halves)

    await trio.testing.check_one_way_stream(maker, None)


@pytest.mark.trio
@deadline
async def test_anon_refuses_a_stranger_who_connects_first(env: Env) -> None:
    if env.sim is None:  # pragma: no cover
        pytest.skip("needs the simulated kernel to place the stranger")
    kernel = env.sim.kernel
    kernel.intruder = 0
    before = env.handle_count()
    with pytest.raises(PermissionError, match="another process connected"):
        await pt.connect("anon://")
    assert kernel.intruder
    assert env.handle_count() == before + 1  # only the stranger's end is left
    kernel.k_CloseHandle(kernel.intruder)


@pytest.mark.trio
@deadline
async def test_spare_instance_serves_two_clients_back_to_back(env: Env) -> None:
    url = env.url()
    async with await pt.listen(url) as listener:
        first = await pt.connect(url)  # before accept: the first instance
        first_server = await listener.accept()
        second = await pt.connect(url)  # the spare made during that accept
        second_server = await listener.accept()
        async with first, first_server, second, second_server:
            await first.send_all(b"1")
            await second.send_all(b"2")
            assert await first_server.receive_some() == b"1"
            assert await second_server.receive_some() == b"2"


@pytest.mark.trio
@deadline
async def test_busy_pipe_waits_for_the_next_instance(env: Env) -> None:
    url = env.url()
    async with await pt.listen(url) as listener:
        first = await pt.connect(url)  # takes the only listening instance
        second: list[pt.Stream] = []

        async def connect_second() -> None:
            second.append(await pt.connect(url))  # ERROR_PIPE_BUSY → wait

        async with trio.open_nursery() as nursery:
            nursery.start_soon(connect_second)
            await trio.sleep(0.3)
            assert not second, "connected although every instance was busy"
            first_server = await listener.accept()  # makes the next instance
            with trio.fail_after(5):
                second_server = await listener.accept()
        async with first, first_server, second[0], second_server:
            await second[0].send_all(b"late")
            assert await second_server.receive_some() == b"late"

        # A connect that waits can be cancelled, and leaves nothing behind.
        blocker = await pt.connect(url)  # the spare is taken again
        before = env.handle_count()
        with trio.move_on_after(0.3) as scope:
            await pt.connect(url)
        assert scope.cancelled_caught
        # The abandoned worker thread ends its WaitNamedPipeW slice (at most
        # 100 ms; Windows holds a handle to the pipe file system meanwhile).
        with trio.fail_after(5):
            while env.handle_count() != before:
                await trio.sleep(0.05)
        await blocker.aclose()


@pytest.mark.trio
@deadline
async def test_cancelled_reads_lose_nothing_and_leak_nothing(env: Env) -> None:
    client, server = await pipe_pair(env.url())
    async with client, server:
        before = env.handle_count()
        for i in range(50):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.receive_some)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()  # CancelIoEx, then the completion
            message = b"%d" % i
            await server.send_all(message)
            assert await client.receive_some() == message
        assert env.handle_count() == before


@pytest.mark.trio
@deadline
async def test_closing_the_listener_wakes_accept(env: Env) -> None:
    listener = await pt.listen(env.url())

    async def accept_expecting_closed() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await listener.accept()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_expecting_closed)
        await trio.testing.wait_all_tasks_blocked()
        await listener.aclose()


@pytest.mark.trio
@deadline
async def test_cancelled_accept_leaves_the_listener_working(env: Env) -> None:
    url = env.url()
    async with await pt.listen(url) as listener:
        with trio.move_on_after(0.05):
            await listener.accept()
        async with await pt.connect(url) as client:
            async with await listener.accept() as server:
                await client.send_all(b"ok")
                assert await server.receive_some() == b"ok"


@pytest.mark.trio
@deadline
async def test_client_that_leaves_before_accept_is_skipped(env: Env) -> None:
    url = env.url()
    async with await pt.listen(url) as listener:
        await (await pt.connect(url)).aclose()  # took the instance, and left
        clients: list[pt.Stream] = []

        async def connect_next() -> None:
            clients.append(await pt.connect(url))  # busy until accept replaces it

        async with trio.open_nursery() as nursery:
            nursery.start_soon(connect_next)
            with trio.fail_after(5):
                server = await listener.accept()  # ERROR_NO_DATA: skipped
        async with clients[0] as client, server:
            await client.send_all(b"second")
            assert await server.receive_some() == b"second"


@pytest.mark.trio
@deadline
async def test_peer_close_is_eof_and_writing_breaks(env: Env) -> None:
    client, server = await pipe_pair(env.url())
    async with server:
        await client.send_all(b"last words")
        await client.aclose()
        assert await server.receive_some() == b"last words"
        assert await server.receive_some() == b""
        with pytest.raises(trio.BrokenResourceError):
            await server.send_all(b"anyone?")


@pytest.mark.trio
@deadline
async def test_connect_to_nothing(env: Env) -> None:
    url = env.url()
    with pytest.raises(FileNotFoundError, match="is anything listening") as info:
        await pt.connect(url)
    assert url in str(info.value)


@pytest.mark.wine_differs(
    reason="Wine 8 ignores FILE_FLAG_FIRST_PIPE_INSTANCE: its CreateNamedPipeW "
    "(dlls/kernelbase/sync.c) always opens with FILE_OPEN_IF, so a second "
    "server silently shares the name"
)
@pytest.mark.trio
@deadline
async def test_listen_twice(env: Env) -> None:
    url = env.url()
    async with await pt.listen(url):
        with pytest.raises(OSError, match="already exists") as taken:
            await pt.listen(url)
        assert taken.value.errno == errno.EADDRINUSE


@pytest.mark.trio
@deadline
async def test_scheduler_watches_a_pipe(env: Env) -> None:
    client, server = await pipe_pair(env.url())
    got: list[tuple[Events, bytes | bytearray]] = []

    async def on_read(now: float, events: Events, stream: pt.Stream) -> None:
        got.append((events, await stream.receive_some()))

    async with client, server, pt.open_scheduler() as sched:
        reg = sched.register_connector(Events.READ | Events.CLOSE, server, on_read)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # nothing to read: the registration waits
        await client.send_all(b"ping")
        with trio.fail_after(5):
            while len(got) < 1:
                await trio.sleep(0.01)
        assert got == [(Events.READ, b"ping")]
        await client.send_eof()  # a zero-length message, seen without reading
        with trio.fail_after(5):
            while len(got) < 2:
                await trio.sleep(0.01)
        assert got[1] == (Events.READ | Events.CLOSE, b"")
        reg.cancel()
        writes = sched.register_connector(Events.WRITE, server, on_write := Recorder())
        with trio.fail_after(5):
            while on_write.called < 3:  # writable at once, level-triggered
                await trio.sleep(0.01)
        await server.aclose()
        with trio.fail_after(5):
            while not writes.done:  # closing the stream ends the registration
                await trio.sleep(0.01)


@pytest.mark.trio
@deadline
async def test_scheduler_sees_a_pipe_peer_close(env: Env) -> None:
    client, server = await pipe_pair(env.url())
    seen: list[Events] = []
    async with server, pt.open_scheduler() as sched:
        sched.register_connector(
            Events.READ | Events.CLOSE,
            server,
            lambda now, events, stream: seen.append(events),
            oneshot=True,
        )
        await trio.testing.wait_all_tasks_blocked()
        assert seen == []
        await client.aclose()
        with trio.fail_after(5):
            while not seen:
                await trio.sleep(0.01)
        assert seen == [Events.READ | Events.CLOSE]
        assert await server.receive_some() == b""


@pytest.mark.trio
@deadline
async def test_scheduler_watches_a_pipe_listener(env: Env) -> None:
    accepted: list[pt.Stream] = []

    async def on_accept(now: float, events: Events, listener: pt.Listener) -> None:
        assert events == Events.READ
        accepted.append(await listener.accept())

    async with await pt.listen(env.url()) as listener, pt.open_scheduler() as sched:
        reg = sched.register_connector(Events.READ, listener, on_accept)
        await trio.testing.wait_all_tasks_blocked()
        assert accepted == []
        for n in range(2):
            async with await pt.connect(listener.url) as client:
                with trio.fail_after(5):
                    while len(accepted) <= n:
                        await trio.sleep(0.01)
                await client.send_all(b"hi")
                assert await accepted[n].receive_some() == b"hi"
                await accepted[n].aclose()
        await listener.aclose()  # ends the registration
        with trio.fail_after(5):
            while not reg.done:
                await trio.sleep(0.01)


@pytest.mark.trio
@deadline
async def test_duplex_pipe_cannot_split(env: Env) -> None:
    client, server = await pipe_pair(env.url())
    async with client, server:
        with pytest.raises(PacketeerError, match="duplex"):
            client.split()  # type: ignore[attr-defined]


class Recorder:
    def __init__(self) -> None:
        self.called = 0

    def __call__(self, now: float, events: Events, stream: object) -> None:
        assert events == Events.WRITE
        self.called += 1


# -- the one private trio name: where the Windows code takes trio's cffi FFI ------


def test_trio_still_keeps_its_windows_ffi_where_we_take_it() -> None:
    # If this fails, trio moved its FFI: the fallback below keeps Windows pipes
    # working, but update TRIO_FFI_MODULE to trio's new place.
    pytest.importorskip("_cffi_backend", reason="trio's Windows FFI needs cffi")
    from packeteer_trio import _trio_ffi

    module = importlib.import_module(_trio_ffi.TRIO_FFI_MODULE)
    assert _trio_ffi.trio_ffi() is module.ffi
    assert module.ffi.sizeof("OVERLAPPED") > 0


def test_trio_ffi_fallback_finds_it_in_another_trio_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("_cffi_backend", reason="trio's Windows FFI needs cffi")
    from packeteer_trio import _trio_ffi

    real = importlib.import_module(_trio_ffi.TRIO_FFI_MODULE).ffi
    for name in list(sys.modules):  # only our stand-in holds the FFI
        if name.startswith("trio.") and getattr(sys.modules[name], "ffi", None):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, _trio_ffi.TRIO_FFI_MODULE, None)  # "moved"
    with pytest.raises(ImportError, match="trio no longer has its Windows cffi FFI"):
        _trio_ffi.trio_ffi()
    moved = types.ModuleType("trio._core._moved_ffi")
    vars(moved)["ffi"] = real
    monkeypatch.setitem(sys.modules, moved.__name__, moved)
    assert _trio_ffi.trio_ffi() is real


# -- real Windows only -----------------------------------------------------------


@pytest.mark.skipif(not WINDOWS, reason="checks what URL.parse does on Windows")
def test_fifo_and_local_on_windows() -> None:  # pragma: no cover
    with pytest.raises(UnsupportedScheme, match=r"pipe:///name"):
        URL.parse("fifo:///tmp/x")
    import socket

    if not hasattr(socket, "AF_UNIX"):
        with pytest.raises(UnsupportedScheme, match="AF_UNIX"):
            URL.parse("local:///C:/tmp/x.sock")
    assert URL.parse("pipe:///a/b").path == "/a/b"

"""Every face method has exactly the signature of the ABC method it implements.

Callers program against the ABCs, and some pass arguments by keyword as the
ABCs name them (httpcore calls ``await stream.send(item=data)``), so a
parameter called ``data`` where ``anyio.abc.ByteSendStream.send`` says
``item`` is a TypeError in someone else's code. The rule checked here, for
every public class of both faces and every method an ``anyio.abc`` or
``trio.abc`` class in its MRO declares: the ABC's parameters come in the same
order with the same names, kinds and defaults; the only thing a face may add
is a keyword-only parameter with a default (``receive(*, max_size=None)``),
which no call that is valid against the ABC can reach.

The static check walks the classes; the behavioural tests below call each
object kind the way users do (by keyword) and check the live objects'
methods too, since a class may bind methods per instance.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.abc
import pytest
import trio
import trio.abc

import packeteer_trio as pt
import packeteer_trio._anyio._abc
import packeteer_trio._anyio._datagram
import packeteer_trio._anyio._inproc
import packeteer_trio._anyio._listener
import packeteer_trio._anyio._pipe_readahead
import packeteer_trio._anyio._selecting
import packeteer_trio._anyio._stream
import packeteer_trio._anyio._transport
import packeteer_trio._trio._abc
import packeteer_trio._trio._datagram
import packeteer_trio._trio._inproc
import packeteer_trio._trio._listener
import packeteer_trio._trio._packet
import packeteer_trio._trio._stream
import packeteer_trio._trio._wrapped
from packeteer_trio import anyio_compat as pa

from . import _win32_sim
from .conftest import linux_only, posix_only

FACE_MODULES: list[ModuleType] = [
    packeteer_trio._trio._abc,
    packeteer_trio._trio._stream,
    packeteer_trio._trio._listener,
    packeteer_trio._trio._datagram,
    packeteer_trio._trio._packet,
    packeteer_trio._trio._seqpacket,
    packeteer_trio._trio._wrapped,
    packeteer_trio._trio._inproc,
    packeteer_trio.anyio_compat,
    packeteer_trio._anyio._abc,
    packeteer_trio._anyio._stream,
    packeteer_trio._anyio._selecting,
    packeteer_trio._anyio._transport,
    packeteer_trio._anyio._pipe_readahead,
    packeteer_trio._anyio._datagram,
    packeteer_trio._anyio._listener,
    packeteer_trio._anyio._seqpacket,
    packeteer_trio._anyio._inproc,
]
ABCS: frozenset[type] = frozenset(
    value
    for module in (anyio.abc, trio.abc)
    for value in vars(module).values()
    if isinstance(value, type)
)


def face_classes(modules: list[ModuleType]) -> list[type]:
    """Public classes defined in *modules* that implement an anyio/trio ABC."""
    found = []
    for module in modules:
        for name, value in sorted(vars(module).items()):
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and not name.startswith("_")
                and any(base in ABCS for base in value.__mro__)
            ):
                found.append(value)
    return found


def abc_methods(cls: type) -> Iterator[tuple[str, type, Callable[..., Any]]]:
    """``(name, abc, function)`` for each public method an ABC of *cls* declares."""
    seen: set[tuple[str, type]] = set()
    for abc in cls.__mro__:
        if abc not in ABCS:
            continue
        for name, member in vars(abc).items():
            if name.startswith("_") or (name, abc) in seen:
                continue
            if isinstance(member, (property, classmethod, staticmethod)):
                continue  # from_socket and properties: inherited as they are
            if inspect.isfunction(member):
                seen.add((name, abc))
                yield name, abc, member


def compare(ours: inspect.Signature, theirs: inspect.Signature) -> str | None:
    """What is wrong with *ours* as an implementation of *theirs*, or None."""
    mine, wanted = list(ours.parameters.values()), list(theirs.parameters.values())
    if len(mine) < len(wanted):
        return f"{ours} lacks parameters of {theirs}"
    for have, want in zip(mine[: len(wanted)], wanted, strict=True):
        if (have.name, have.kind, have.default) != (want.name, want.kind, want.default):
            return f"{ours} differs from {theirs} at {have.name!r} / {want.name!r}"
    for extra in mine[len(wanted) :]:
        if extra.kind is not inspect.Parameter.KEYWORD_ONLY or extra.default is (
            inspect.Parameter.empty
        ):
            return (
                f"{ours} adds {extra.name!r} to {theirs}: only keyword-only "
                "parameters with a default may be added"
            )
    return None


def class_mismatches(cls: type) -> list[str]:
    problems = []
    for name, abc, function in abc_methods(cls):
        ours = inspect.getattr_static(cls, name)
        if ours is function:
            continue  # not overridden (an abstract one would fail to instantiate)
        problem = compare(inspect.signature(ours), inspect.signature(function))
        if problem is not None:
            problems.append(
                f"{cls.__qualname__}.{name} vs {abc.__qualname__}: {problem}"
            )
    return problems


def object_mismatches(obj: object) -> list[str]:
    """The same check on a live object's bound methods (instance attributes too)."""
    problems = []
    for name, abc, function in abc_methods(type(obj)):
        theirs = inspect.signature(function)
        unbound = list(theirs.parameters.values())[1:]  # without self
        problem = compare(
            inspect.signature(getattr(obj, name)), theirs.replace(parameters=unbound)
        )
        if problem is not None:
            problems.append(
                f"{type(obj).__qualname__}.{name} vs {abc.__qualname__}: {problem}"
            )
    return problems


CLASSES = face_classes(FACE_MODULES)


def test_the_walk_finds_both_faces() -> None:
    names = {cls.__qualname__ for cls in CLASSES}
    for expected in (
        "Stream",
        "SocketStream",
        "PipeStream",
        "Listener",
        "DatagramSocket",
        "DatagramChannel",
        "PacketChannel",
        "WrappedStream",
        "WrappedListener",
        "WrappedDatagramSocket",
        "WrappedDatagramChannel",
        "LeanSocketStream",
        "LeanUNIXSocketStream",
        "WrappedSocketStream",
        "WrappedUNIXSocketStream",
        "ReadAheadSocketStream",
        "ReadAheadUNIXSocketStream",
        "TransportSocketStream",
        "ReadAheadPipeStream",
        "SeqpacketChannel",
        "SeqpacketStream",
        "URLConnectable",
    ):
        assert expected in names, expected
    # Both faces' datagram and packet classes, both Listener classes.
    modules = {(cls.__module__, cls.__qualname__) for cls in CLASSES}
    for name in (
        "DatagramSocket",
        "DatagramChannel",
        "OSDatagramSocket",
        "OSDatagramChannel",
        "OSListener",
        "PacketChannel",
        "Listener",
        "PipeStream",
        "InprocStream",
        "InprocListener",
        "InprocDatagramSocket",
        "InprocDatagramChannel",
    ):
        assert sum(1 for _, qualname in modules if qualname == name) == 2, name


def test_the_check_catches_a_renamed_parameter() -> None:
    """The checker itself: each kind of mismatch is reported."""

    class Renamed(anyio.abc.ByteStream):
        async def send(self, data: bytes) -> None:  # anyio says ``item``
            raise NotImplementedError

    class ExtraPositional(trio.abc.ReceiveChannel[bytes]):
        async def receive(self, max_size: int | None = None) -> bytes:
            raise NotImplementedError

    class OtherDefault(trio.abc.ReceiveStream):
        async def receive_some(self, max_bytes: int | None = 1) -> bytes:
            raise NotImplementedError

    class KeywordExtra(trio.abc.ReceiveChannel[bytes]):
        async def receive(self, *, max_size: int | None = None) -> bytes:
            raise NotImplementedError

    assert any("send" in p for p in class_mismatches(Renamed))
    assert any("max_size" in p for p in class_mismatches(ExtraPositional))
    assert any("receive_some" in p for p in class_mismatches(OtherDefault))
    assert class_mismatches(KeywordExtra) == []


@pytest.mark.parametrize(
    "cls", CLASSES, ids=[f"{c.__module__}.{c.__qualname__}" for c in CLASSES]
)
def test_face_methods_have_the_abc_signatures(cls: type) -> None:
    assert class_mismatches(cls) == []


def test_windows_handle_stream_has_the_abc_signatures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HandleStream too: the real module on Windows, the simulated one elsewhere."""
    if sys.platform == "win32":  # pragma: no cover
        import packeteer_trio._trio._stream_windows as module
    else:
        pytest.importorskip("_cffi_backend", reason="the simulation uses trio's cffi")
        module = _win32_sim.load(monkeypatch).stream_windows
    try:
        classes = face_classes([module])
        assert [cls.__qualname__ for cls in classes] == ["HandleStream"]
        assert class_mismatches(classes[0]) == []
    finally:
        if sys.platform != "win32":
            _win32_sim.unload()


# --- behaviour: every anyio object kind, called by keyword ----------------------

_BACKENDS: list[Any] = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param("trio", id="trio"),
]


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


_counter = iter(range(1_000_000))


def _abstract() -> str:
    return f"local:///%00pt-sig-{os.getpid()}-{next(_counter)}"


@asynccontextmanager
async def anyio_stream_pair(
    kind: str, tmp_path: Path
) -> AsyncIterator[tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]]:
    """``(sender, receiver)`` of one anyio stream kind."""
    async with AsyncExitStack() as stack:
        if kind in ("anon", "unnamed_local"):
            stream = await pa.connect("anon://" if kind == "anon" else "local://")
            stack.push_async_callback(stream.aclose)
            yield stream, stream
            return
        url = {
            "tcp": "tcp://127.0.0.1:0",
            "local_path": f"local://{tmp_path}/sig.sock",
            "local_abstract": _abstract(),
            "fifo": f"fifo://{tmp_path}/sig.fifo",
            "inproc": "inproc://sig",
        }[kind]
        listener = await pa.listen(url)
        stack.push_async_callback(listener.aclose)
        if kind == "fifo":  # the accepted end reads, the connected end writes
            receiver = await listener.accept()
            stack.push_async_callback(receiver.aclose)
            sender = await pa.connect(listener.url)
            stack.push_async_callback(sender.aclose)
        else:
            sender = await pa.connect(listener.url)
            stack.push_async_callback(sender.aclose)
            receiver = await listener.accept()
            stack.push_async_callback(receiver.aclose)
        yield sender, receiver


STREAM_KINDS = [
    pytest.param("tcp"),
    pytest.param("local_path", marks=posix_only),
    pytest.param("local_abstract", marks=linux_only),
    pytest.param("unnamed_local", marks=posix_only),
    pytest.param("anon", marks=posix_only),
    pytest.param("fifo", marks=posix_only),
    pytest.param("inproc"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", STREAM_KINDS)
async def test_anyio_streams_take_keywords(kind: str, tmp_path: Path) -> None:
    async with anyio_stream_pair(kind, tmp_path) as (sender, receiver):
        assert object_mismatches(sender) == []
        assert object_mismatches(receiver) == []
        with anyio.fail_after(5):
            await sender.send(item=b"by keyword")
            data = b""
            while len(data) < 10:
                data += await receiver.receive(max_bytes=10 - len(data))
        assert data == b"by keyword"
        if isinstance(sender, anyio.abc.UNIXSocketStream):
            assert isinstance(receiver, anyio.abc.UNIXSocketStream)
            read_fd, write_fd = os.pipe()
            try:
                await sender.send_fds(message=b"f", fds=[write_fd])
                with anyio.fail_after(5):
                    message, fds = await receiver.receive_fds(msglen=1, maxfds=1)
                assert message == b"f" and len(fds) == 1
                os.close(fds[0])
            finally:
                os.close(read_fd)
                os.close(write_fd)


def _datagram_url(kind: str, tmp_path: Path, n: int) -> str:
    if kind == "udp":
        return "udp4://127.0.0.1:0"
    if kind == "local_path":
        return f"local://{tmp_path}/sig-{n}.sock?behaviour=datagram"
    if kind == "inproc":
        return f"inproc://sig-{n}?behaviour=datagram"
    return _abstract() + "?behaviour=datagram"


DATAGRAM_KINDS = [
    pytest.param("udp"),
    pytest.param("local_path", marks=posix_only),
    pytest.param("local_abstract", marks=linux_only),
    pytest.param("inproc"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", DATAGRAM_KINDS)
async def test_anyio_datagrams_take_keywords(kind: str, tmp_path: Path) -> None:
    async with (
        await pa.open_datagram(_datagram_url(kind, tmp_path, 1)) as server,
        await pa.open_datagram(_datagram_url(kind, tmp_path, 2)) as client,
    ):
        assert object_mismatches(server) == []
        await client.send(item=(b"socket", server.url))
        with anyio.fail_after(5):
            assert await server.receive() == (b"socket", client.url)
            local = _datagram_url(kind, tmp_path, 3) if kind != "udp" else None
        async with await pa.connect_datagram(server.url, local=local) as channel:
            assert object_mismatches(channel) == []
            await channel.send(item=b"channel")
            with anyio.fail_after(5):
                data, sender = await server.receive(max_size=100)
            assert data == b"channel"
            await server.send(item=(b"back", sender))
            with anyio.fail_after(5):
                assert await channel.receive(max_size=100) == b"back"


@pytest.mark.anyio
@posix_only
async def test_anyio_unnamed_datagram_pair_takes_keywords() -> None:
    async with await pa.connect_datagram("local://?behaviour=datagram") as channel:
        assert object_mismatches(channel) == []
        await channel.send(item=b"self")
        assert await channel.receive() == b"self"


@pytest.mark.anyio
async def test_anyio_listener_and_connectable_take_keywords() -> None:
    async with await pa.listen("tcp://127.0.0.1:0") as listener:
        assert object_mismatches(listener) == []
        connectable = pa.URLConnectable(listener.url)
        assert object_mismatches(connectable) == []

        async def handler(stream: anyio.abc.ByteStream) -> None:
            async with stream:
                await stream.send(item=await stream.receive(max_bytes=100))

        async with anyio.create_task_group() as group:
            group.start_soon(lambda: listener.serve(handler=handler, task_group=group))
            async with await connectable.connect() as client:
                await client.send(item=b"echo")
                with anyio.fail_after(5):
                    assert await client.receive() == b"echo"
            group.cancel_scope.cancel()


# --- the trio face, by keyword ---------------------------------------------------


@pytest.mark.trio
@pytest.mark.parametrize("kind", STREAM_KINDS)
async def test_trio_streams_take_keywords(kind: str, tmp_path: Path) -> None:
    url = {
        "tcp": "tcp://127.0.0.1:0",
        "local_path": f"local://{tmp_path}/sig.sock",
        "local_abstract": _abstract(),
        "unnamed_local": "local://",
        "anon": "anon://",
        "fifo": f"fifo://{tmp_path}/sig.fifo",
        "inproc": "inproc://sig",
    }[kind]
    async with AsyncExitStack() as stack:
        if kind in ("anon", "unnamed_local"):
            sender = receiver = await pt.connect(url)
            stack.push_async_callback(sender.aclose)
        else:
            listener = await pt.listen(url)
            stack.push_async_callback(listener.aclose)
            if kind == "fifo":
                receiver = await listener.accept()
                sender = await pt.connect(listener.url)
            else:
                sender = await pt.connect(listener.url)
                receiver = await listener.accept()
            stack.push_async_callback(sender.aclose)
            stack.push_async_callback(receiver.aclose)
            assert object_mismatches(listener) == []
        assert object_mismatches(sender) == []
        assert object_mismatches(receiver) == []
        with trio.fail_after(5):
            await sender.send_all(data=b"by keyword")
            data = b""
            while len(data) < 10:
                data += await receiver.receive_some(max_bytes=10 - len(data))
        assert data == b"by keyword"


@pytest.mark.trio
@pytest.mark.parametrize("url", ["udp4://127.0.0.1:0", "inproc://sig?behaviour=dgram"])
async def test_trio_datagram_channel_takes_keywords(url: str) -> None:
    async with await pt.open_datagram(url) as server:
        assert object_mismatches(server) == []
        channel = await pt.connect_datagram(server.url)
        async with channel:
            assert object_mismatches(channel) == []
            await channel.send(value=b"ping")
            with trio.fail_after(5):
                data, sender = await server.receive_from(max_size=10)
            await server.send_to(data=data.upper(), address=sender)
            with trio.fail_after(5):
                assert await channel.receive(max_size=10) == b"PING"

"""User schemes: register_scheme(), the factory protocols and the adapters."""

from __future__ import annotations

import errno
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import trio
import trio.testing

import packeteer_trio as pt
from packeteer_trio import URL
from packeteer_trio import anyio_compat as pa
from packeteer_trio._trio._listener import OSListener
from packeteer_trio.scheduler import Events, open_scheduler

# -- an in-process stream scheme: mem://NAME --------------------------------------


class MemListener(trio.abc.Listener[trio.abc.Stream]):
    def __init__(
        self,
        url: URL,
        incoming: trio.MemoryReceiveChannel[trio.abc.Stream],
        forget: Callable[[], object],
    ) -> None:
        self.url = url  # a `url` attribute is used as the listener's URL
        self._incoming = incoming
        self._forget = forget

    async def accept(self) -> trio.abc.Stream:
        return await self._incoming.receive()

    async def aclose(self) -> None:
        self._forget()
        await self._incoming.aclose()


class MemScheme:
    """Streams between tasks of this process, by name: a StreamSchemeFactory."""

    def __init__(self) -> None:
        self.listeners: dict[str, trio.MemorySendChannel[trio.abc.Stream]] = {}

    async def connect(self, url: URL) -> trio.abc.Stream:
        queue = self.listeners.get(url.host)
        if queue is None:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"{url}: connect failed: nobody listens"
            )
        client, server = trio.testing.memory_stream_pair()
        await queue.send(server)
        return client

    async def listen(self, url: URL, backlog: int | None) -> MemListener:
        if url.host in self.listeners:
            raise OSError(errno.EADDRINUSE, f"{url}: listen failed: name in use")
        send, receive = trio.open_memory_channel[trio.abc.Stream](backlog or 16)
        self.listeners[url.host] = send
        return MemListener(url, receive, lambda: self.listeners.pop(url.host))


def mem_rules(url: URL, text: str) -> URL:
    if not url.host or url.port is not None or url.path not in ("", "/"):
        raise pt.InvalidURL(f"{text!r}: write mem://NAME")
    return url.replace(path="")


# -- an in-process datagram scheme: bus://NAME ----------------------------------------

Packet = tuple[bytes, URL]


class BusSocket(trio.abc.Channel[Packet]):
    def __init__(self, bus: Bus, url: URL) -> None:
        self.bus, self.url = bus, url
        self._send, self._receive = trio.open_memory_channel[Packet](16)
        bus.inboxes[url.host] = self._send

    async def send(self, value: Packet) -> None:
        data, address = value
        await trio.lowlevel.checkpoint()
        inbox = self.bus.inboxes.get(address.host)
        if inbox is not None:
            try:
                inbox.send_nowait((data, self.url))
            except trio.WouldBlock:
                pass  # a full queue drops, as datagrams do

    async def receive(self) -> Packet:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self.bus.inboxes.pop(self.url.host, None)
        await self._receive.aclose()


class BusChannel(trio.abc.Channel[bytes]):
    def __init__(self, sock: BusSocket, peer: URL) -> None:
        self.sock, self.url = sock, peer

    async def send(self, value: bytes) -> None:
        await self.sock.send((value, self.url))

    async def receive(self) -> bytes:
        while True:
            data, sender = await self.sock.receive()
            if sender == self.url:
                return data

    async def aclose(self) -> None:
        await self.sock.aclose()


class Bus:
    """Datagrams between tasks, by name: a DatagramSchemeFactory."""

    def __init__(self) -> None:
        self.inboxes: dict[str, trio.MemorySendChannel[Packet]] = {}
        self._names = itertools.count()

    async def open_datagram(self, url: URL) -> BusSocket:
        await trio.lowlevel.checkpoint()
        return BusSocket(self, url)

    async def connect_datagram(self, url: URL, local: URL | None) -> BusChannel:
        own = local or URL.parse(f"bus://unnamed{next(self._names)}")
        return BusChannel(await self.open_datagram(own), url)


@pytest.fixture
def mem() -> Iterator[MemScheme]:
    scheme = MemScheme()
    pt.register_scheme("mem", scheme, validate=mem_rules)
    yield scheme
    pt.unregister_scheme("mem")


@pytest.fixture
def bus() -> Iterator[Bus]:
    scheme = Bus()
    pt.register_scheme("bus", scheme)
    yield scheme
    pt.unregister_scheme("bus")


# -- the registry -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "Mem", "1mem", "m em", "mem://", "mem/x", "é"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="bad scheme name"):
        pt.register_scheme(name, MemScheme())


@pytest.mark.parametrize("name", ["tcp", "udp", "local", "fd", "anon"])
def test_built_ins_cannot_be_replaced(name: str) -> None:
    with pytest.raises(ValueError, match="built-in"):
        pt.register_scheme(name, MemScheme())
    with pytest.raises(ValueError, match="built-in"):
        pt.register_scheme(name, MemScheme(), replace=True)
    with pytest.raises(ValueError, match="built-in"):
        pt.unregister_scheme(name)


def test_duplicates_and_replacing(mem: MemScheme) -> None:
    with pytest.raises(ValueError, match="already registered"):
        pt.register_scheme("mem", MemScheme())
    pt.register_scheme("mem", mem, validate=mem_rules, replace=True)
    with pytest.raises(ValueError, match="no scheme 'nothing'"):
        pt.unregister_scheme("nothing")


def test_unregistered_scheme_is_unknown() -> None:
    pt.register_scheme("gone", MemScheme())
    assert pt.URL.parse("gone://x").scheme == "gone"
    pt.unregister_scheme("gone")
    with pytest.raises(pt.InvalidURL, match="unknown scheme 'gone'"):
        pt.URL.parse("gone://x")


def test_not_a_factory() -> None:
    with pytest.raises(TypeError, match="not a scheme factory"):
        pt.register_scheme("junk", object())  # type: ignore[arg-type]


def test_validate_runs_in_url_parse(mem: MemScheme) -> None:
    assert str(pt.URL.parse("mem://Name/")) == "mem://name"
    with pytest.raises(pt.InvalidURL, match="write mem://NAME"):
        pt.URL.parse("mem://")
    with pytest.raises(pt.InvalidURL, match="no datagram behaviour"):
        pt.URL.parse("mem://x?behaviour=datagram")


# -- streams through connect / listen / serve ------------------------------------


@pytest.mark.trio
async def test_connect_listen(mem: MemScheme) -> None:
    with pytest.raises(ConnectionRefusedError, match="mem://a: connect failed"):
        await pt.connect("mem://a")
    listener = await pt.listen("mem://a")
    assert isinstance(listener, pt.WrappedListener)
    assert listener.url == pt.URL.parse("mem://a")
    assert listener.sockets == []
    with pytest.raises(pt.PacketeerError, match="no descriptor"):
        listener.fileno()

    client = await pt.connect("mem://a")
    server = await listener.accept()
    assert isinstance(client, pt.WrappedStream)
    assert isinstance(server, pt.WrappedStream)
    assert client.transport is None
    assert client.local_address == client.url == pt.URL.parse("mem://a")
    await client.send_all(b"hello")
    data = await server.receive_some()
    assert data == b"hello" and type(data) is bytes
    assert client.can_send_eof
    await client.send_eof()
    assert await server.receive_some() == b""
    for resource in (client, server, listener):
        await resource.aclose()
    assert mem.listeners == {}


@pytest.mark.trio
async def test_wrapped_streams_pass_trio_conformance(mem: MemScheme) -> None:
    listener = await pt.listen("mem://conformance")

    async def maker() -> tuple[pt.Stream, pt.Stream]:
        client = await pt.connect("mem://conformance")
        return client, await listener.accept()

    await trio.testing.check_half_closeable_stream(maker, None)
    await listener.aclose()


@pytest.mark.trio
async def test_serve(mem: MemScheme) -> None:
    async def handler(stream: pt.Stream) -> None:
        await stream.send_all(b"served:" + await stream.receive_some())
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(pt.serve, "mem://svc", handler)
        assert listeners[0].url == pt.URL.parse("mem://svc")
        for _ in range(3):
            async with await pt.connect("mem://svc") as stream:
                await stream.send_all(b"x")
                assert await stream.receive_some() == b"served:x"
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_factory_returning_packeteer_objects_is_not_wrapped() -> None:
    class Alias:
        """alias://NAME: a name for a built-in URL."""

        def __init__(self, table: dict[str, str]) -> None:
            self.table = table

        async def connect(self, url: URL) -> pt.Stream:
            return await pt.connect(self.table[url.host])

        async def listen(self, url: URL, backlog: int | None) -> pt.Listener:
            listener = await pt.listen(self.table[url.host], backlog=backlog)
            self.table[url.host] = str(listener.url)
            return listener

    pt.register_scheme("alias", Alias({"web": "tcp://127.0.0.1:0"}))
    try:
        listener = await pt.listen("alias://web")
        assert type(listener) is OSListener  # packeteer's own, not wrapped
        stream = await pt.connect("alias://web")
        assert isinstance(stream, pt.SocketStream)
        accepted = await listener.accept()
        for resource in (stream, accepted, listener):
            await resource.aclose()
    finally:
        pt.unregister_scheme("alias")


@pytest.mark.trio
async def test_factory_returning_junk() -> None:
    class Junk:
        async def connect(self, url: URL) -> Any:
            return "not a stream"

        async def listen(self, url: URL, backlog: int | None) -> Any:
            return 42

    pt.register_scheme("junk", Junk())
    try:
        with pytest.raises(TypeError, match=r"connect\(\) returned str"):
            await pt.connect("junk://x")
        with pytest.raises(TypeError, match=r"listen\(\) returned int"):
            await pt.listen("junk://x")
    finally:
        pt.unregister_scheme("junk")


@pytest.mark.trio
async def test_scheduler_refuses_layered_streams(mem: MemScheme) -> None:
    listener = await pt.listen("mem://sched")
    stream = await pt.connect("mem://sched")

    def callback(now: float, events: Events, connector: object) -> None:
        raise AssertionError("never runs")  # pragma: no cover

    async with open_scheduler() as scheduler:
        with pytest.raises(pt.PacketeerError, match="scheduler watches descriptors"):
            scheduler.register_connector(Events.READ, stream, callback)
    await stream.aclose()
    await listener.aclose()


# -- datagrams ----------------------------------------------------------------


@pytest.mark.trio
async def test_datagrams(bus: Bus) -> None:
    with pytest.raises(pt.InvalidURL, match="open_datagram"):
        await pt.connect("bus://a")
    sock = await pt.open_datagram("bus://a")
    assert isinstance(sock, pt.WrappedDatagramSocket)
    assert sock.url == pt.URL.parse("bus://a")
    chan = await pt.connect_datagram("bus://a")
    assert isinstance(chan, pt.WrappedDatagramChannel)
    assert chan.peer_address == pt.URL.parse("bus://a")

    await chan.send(b"one")
    data, sender = await sock.receive_from()
    assert data == b"one"
    assert sender.host.startswith("unnamed")
    await sock.send_to(b"two", sender)
    assert await chan.receive() == b"two"
    await sock.send_many([(b"three", str(sender)), (b"four", sender)])
    assert [await chan.receive(), await chan.receive()] == [b"three", b"four"]

    await chan.send(b"too big")
    with pytest.raises(OSError, match="did not fit max_size=3") as info:
        await sock.receive_from(max_size=3)
    assert info.value.errno == errno.EMSGSIZE
    await chan.send(b"five")
    assert await sock.receive_many() == [(b"five", sender)]

    with pytest.raises(pt.PacketeerError, match="no descriptor"):
        sock.fileno()
    with pytest.raises(pt.PacketeerError, match="no descriptor"):
        assert sock.socket
    await chan.aclose()
    await sock.aclose()
    assert bus.inboxes == {}


def test_anyio_face_refuses_user_schemes(mem: MemScheme, bus: Bus) -> None:
    async def main() -> None:
        with pytest.raises(pt.InvalidURL, match="anyio face"):
            await pa.connect("mem://a")
        with pytest.raises(pt.InvalidURL, match="anyio face"):
            await pa.listen("mem://a")

    anyio.run(main, backend="trio")

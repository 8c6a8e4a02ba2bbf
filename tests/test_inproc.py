"""inproc://: streams and datagrams through memory, within one event loop.

trio's conformance checks run in test_streams.py (and the tests there that
are about the API run over inproc:// too); here is what is inproc's own:
backpressure, names per event loop, the errors, no descriptors, datagrams.
"""

from __future__ import annotations

import asyncio
import errno
import io
from pathlib import Path

import anyio
import pytest
import trio
import trio.testing

import packeteer_trio as pt
from packeteer_trio import anyio_compat as pa
from packeteer_trio._inproc import DATAGRAM_QUEUE, STREAM_BUFFER

DGRAM = "?behaviour=datagram"


async def pair(url: str = "inproc://pair") -> tuple[pt.Stream, pt.Stream]:
    async with await pt.listen(url) as listener:
        client = await pt.connect(url)
        server = await listener.accept()
    return client, server


@pytest.mark.trio
async def test_send_all_waits_while_the_peer_does_not_read() -> None:
    client, server = await pair()
    payload = bytes(range(256)) * (4 * STREAM_BUFFER // 256)
    done = trio.Event()

    async def sender() -> None:
        await client.send_all(payload)
        done.set()

    async with client, server, trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()  # bounded: 4 buffers' worth cannot fit
        received = bytearray()
        while len(received) < len(payload):
            received += await server.receive_some(STREAM_BUFFER // 3)
        await done.wait()
        assert received == payload


@pytest.mark.trio
async def test_addresses_and_no_descriptor() -> None:
    client, server = await pair("inproc://Named")
    async with client, server:
        url = pt.URL.parse("inproc://named")  # names are URL hosts: any case
        assert client.url == server.url == url
        assert client.peer_address == server.local_address == url
        assert client.local_address == server.peer_address
        assert client.local_address.host.startswith("~")
        with pytest.raises(io.UnsupportedOperation, match="inproc://named"):
            client.fileno()
        listener = await pt.listen("inproc://other")
        async with listener:
            assert listener.sockets == []
            with pytest.raises(io.UnsupportedOperation):
                listener.fileno()


@pytest.mark.trio
async def test_errors_name_the_url() -> None:
    async with await pt.listen("inproc://taken"):
        with pytest.raises(OSError, match="inproc://taken") as caught:
            await pt.listen("inproc://taken")
        assert caught.value.errno == errno.EADDRINUSE
    # Closed: the name is free again, and nothing answers on it.
    with pytest.raises(ConnectionRefusedError, match="inproc://taken"):
        await pt.connect("inproc://taken")
    async with await pt.listen("inproc://taken"):
        pass
    with pytest.raises(pt.InvalidURL, match="picked for unnamed"):
        await pt.listen("inproc://~1")
    for bad in ("inproc://", "inproc://x:1", "inproc://x/path"):
        with pytest.raises(pt.InvalidURL):
            pt.URL.parse(bad)
    with pytest.raises(pt.InvalidURL, match="open_datagram"):
        await pt.connect("inproc://x?behaviour=datagram")


def test_names_belong_to_one_event_loop() -> None:
    async def hold_and_look(url: str) -> None:
        async with await pt.listen(url):
            await pt.connect(url)  # reachable here
            await look_elsewhere(url)

    async def look_elsewhere(url: str) -> None:
        # Another trio run and an asyncio loop (in threads: they cannot nest)
        # have names of their own: the name is free there.
        async def connect_from_trio() -> None:
            with pytest.raises(ConnectionRefusedError):
                await pt.connect(url)

        async def listen_from_asyncio() -> None:
            async with await pa.listen(url):
                pass

        await trio.to_thread.run_sync(trio.run, connect_from_trio)
        await trio.to_thread.run_sync(asyncio.run, listen_from_asyncio())

    trio.run(hold_and_look, "inproc://loop-bound")


@pytest.mark.trio
async def test_closing_the_listener_hangs_up_on_unaccepted_connections() -> None:
    listener = await pt.listen("inproc://closing")
    client = await pt.connect("inproc://closing")
    await client.send_all(b"never read")
    await listener.aclose()
    assert await client.receive_some() == b""
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"more")
    await client.aclose()


@pytest.mark.trio
async def test_every_operation_is_a_checkpoint() -> None:
    with trio.testing.assert_checkpoints():
        listener = await pt.listen("inproc://cp")
    with trio.testing.assert_checkpoints():
        client = await pt.connect("inproc://cp")
    with trio.testing.assert_checkpoints():
        server = await listener.accept()
    with trio.testing.assert_checkpoints():
        await client.send_all(b"x")
    with trio.testing.assert_checkpoints():
        assert await server.receive_some() == b"x"
    for resource in (client, server, listener):
        with trio.testing.assert_checkpoints():
            await resource.aclose()


@pytest.mark.trio
async def test_a_cancelled_receive_loses_nothing() -> None:
    client, server = await pair()
    async with client, server:
        for index in range(100):
            with trio.move_on_after(0) if index % 2 else trio.CancelScope() as scope:
                if not index % 2:
                    scope.cancel()
                await server.receive_some()
            assert scope.cancelled_caught
            await client.send_all(b"%d" % index)
            assert await server.receive_some() == b"%d" % index


@pytest.mark.trio
async def test_the_scheduler_refuses_clearly() -> None:
    client, server = await pair()
    async with client, server, pt.open_scheduler() as sched:
        with pytest.raises(pt.PacketeerError, match="no descriptor"):
            sched.register_connector(pt.Events.READ, server, lambda *args: None)
            await trio.sleep(0.1)


# --- datagrams -------------------------------------------------------------


@pytest.mark.trio
async def test_datagrams_with_senders_as_urls() -> None:
    async with (
        await pt.open_datagram("inproc://server" + DGRAM) as server,
        await pt.open_datagram("inproc://client" + DGRAM) as client,
    ):
        assert server.url == pt.URL.parse("inproc://server" + DGRAM)
        await client.send_to(b"ping", "inproc://server")
        data, sender = await server.receive_from()
        assert (data, sender) == (b"ping", client.url)
        await server.send_to(b"pong", sender)
        assert await client.receive_from() == (b"pong", server.url)

        await client.send_many((b"%d" % n, server.url) for n in range(10))
        got = await server.receive_many(max_count=4)
        got += await server.receive_many()
        assert got == [(b"%d" % n, client.url) for n in range(10)]

        # Too big for max_size: reported, never cut, and nothing else lost.
        await client.send_many([(b"small", server.url), (b"x" * 100, server.url)])
        await client.send_to(b"after", server.url)
        assert await server.receive_many(max_size=10) == [(b"small", client.url)]
        with pytest.raises(OSError) as caught:
            await server.receive_from(max_size=10)
        assert caught.value.errno == errno.EMSGSIZE
        assert await server.receive_from(max_size=10) == (b"after", client.url)

        with pytest.raises(ConnectionRefusedError, match="inproc://nobody"):
            await client.send_to(b"x", "inproc://nobody")
        with pytest.raises(OSError) as caught:
            await pt.open_datagram("inproc://server" + DGRAM)
        assert caught.value.errno == errno.EADDRINUSE
        with pytest.raises(io.UnsupportedOperation):
            client.fileno()


@pytest.mark.trio
async def test_a_full_receiver_makes_senders_wait() -> None:
    async with (
        await pt.open_datagram("inproc://slow" + DGRAM) as receiver,
        await pt.connect_datagram("inproc://slow" + DGRAM) as channel,
    ):
        sent = 0

        async def sender() -> None:
            nonlocal sent
            for index in range(DATAGRAM_QUEUE + 10):
                await channel.send(b"%d" % index)
                sent += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            assert sent == DATAGRAM_QUEUE  # waiting for room, nothing dropped
            for index in range(DATAGRAM_QUEUE + 10):
                data, sender_url = await receiver.receive_from()
                assert data == b"%d" % index
                assert sender_url == channel.local_address


@pytest.mark.trio
async def test_connected_channels() -> None:
    url = "inproc://peer" + DGRAM
    with pytest.raises(ConnectionRefusedError, match="inproc://peer"):
        await pt.connect_datagram(url)
    async with await pt.open_datagram(url) as peer:
        channel = await pt.connect_datagram(url, local="inproc://me" + DGRAM)
        other = await pt.open_datagram("inproc://other" + DGRAM)
        async with other:
            assert channel.url == channel.peer_address == peer.url
            assert channel.local_address == pt.URL.parse("inproc://me" + DGRAM)
            await channel.send(b"hello")
            data, sender = await peer.receive_from()
            await peer.send_to(data.upper(), sender)
            assert await channel.receive() == b"HELLO"
            # Connected: only the peer may send to it.
            with pytest.raises(PermissionError):
                await other.send_to(b"intruder", channel.local_address)
    async with channel:
        with pytest.raises(ConnectionRefusedError):
            await channel.send(b"peer gone")


# --- the anyio face ----------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_face_datagrams_and_errors(backend: str) -> None:
    async def main() -> None:
        async with (
            await pa.open_datagram("inproc://a" + DGRAM) as server,
            await pa.connect_datagram("inproc://a" + DGRAM) as channel,
        ):
            assert isinstance(server, pa.InprocDatagramSocket)
            assert isinstance(server, anyio.abc.UnreliableObjectStream)
            await channel.send(item=b"hi")
            data, sender = await server.receive()
            await server.send(item=(data * 2, sender))
            assert await channel.receive() == b"hihi"
        with pytest.raises(ConnectionRefusedError, match="inproc://gone"):
            await pa.connect("inproc://gone")
        client, accepted = await _anyio_pair()
        async with client, accepted:

            async def until_eof() -> None:
                with pytest.raises(anyio.EndOfStream):
                    await accepted.receive()

            async with anyio.create_task_group() as group:
                group.start_soon(until_eof)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(anyio.BusyResourceError):
                    await accepted.receive()
                await client.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await client.send(b"x")
            with pytest.raises(anyio.BrokenResourceError):
                await accepted.send(b"x")

    anyio.run(main, backend=backend)


async def _anyio_pair() -> tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]:
    async with await pa.listen("inproc://anyio-pair") as listener:
        client = await pa.connect("inproc://anyio-pair")
        return client, await listener.accept()


@pytest.mark.trio
async def test_receive_into_and_half_close() -> None:
    client, server = await pair()
    async with client, server:
        await client.send_all(b"0123456789")
        await client.send_eof()
        buffer = bytearray(4)
        assert await server.receive_into(buffer) == 4 and buffer == b"0123"
        view = memoryview(bytearray(16))
        assert await server.receive_into(view) == 6
        assert bytes(view[:6]) == b"456789"
        assert await server.receive_into(buffer) == 0  # end of file
        with pytest.raises(trio.ClosedResourceError, match="send_eof"):
            await client.send_all(b"after eof")
        await server.send_all(b"the other way still works")
        assert await client.receive_some() == b"the other way still works"
        buffer.extend(b"resizable again")  # no view of ours is left on it


@pytest.mark.trio
async def test_closing_wakes_a_send_waiting_for_room() -> None:
    async with await pt.open_datagram("inproc://full" + DGRAM) as receiver:
        sender = await pt.open_datagram("inproc://sender" + DGRAM)
        await sender.send_many([(b"x", receiver.url)] * DATAGRAM_QUEUE)

        async def blocked() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await sender.send_to(b"no room", receiver.url)

        with trio.fail_after(10):  # without the wakeup: stuck, not failed
            async with trio.open_nursery() as nursery:
                nursery.start_soon(blocked)
                await trio.testing.wait_all_tasks_blocked()
                await sender.aclose()
        assert len(await receiver.receive_many(max_count=DATAGRAM_QUEUE + 1)) == (
            DATAGRAM_QUEUE
        )


@pytest.mark.trio
async def test_send_file_copies_and_detach_refuses(tmp_path: Path) -> None:
    path = tmp_path / "payload"
    path.write_bytes(bytes(range(256)) * 1024)
    client, server = await pair()
    async with client, server:
        with path.open("rb") as file:
            assert await client.send_file(file, offset=256, count=1024) == 1024
            assert file.tell() == 1280
        received = b""
        while len(received) < 1024:
            received += await server.receive_some()
        assert received == path.read_bytes()[256:1280]
    async with await pt.listen("inproc://no-socket") as listener:
        with pytest.raises(pt.PacketeerError, match="no socket to hand over"):
            listener.detach()
        async with await pt.connect("inproc://no-socket"):  # still listening
            pass

"""The anyio face's datagram sockets on asyncio loops read ahead
(:mod:`packeteer_trio._anyio._datagram_readahead`): the loop reads into a
bounded queue, sends go straight to the kernel.

What that design must keep: memory bounded under a flood, flow control on
``local://`` (the sender waits, nothing is lost), datagrams on
cancellation, never a cut datagram, ICMP errors in their place with the
socket usable, descriptors and credentials with their datagram (and none
leaked), anyio's resource errors, and fairness (an operation that does not
wait still yields now and then, and notices cancellation). Each test runs
on asyncio, uvloop and trio (where the lean loops of the trio face move the
datagrams: the same promises, kept by other means).
"""

from __future__ import annotations

import errno
import os
import random
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from packeteer_trio import URL, DescriptorsDropped
from packeteer_trio import anyio_compat as pa
from packeteer_trio._anyio._datagram_readahead import MAX_QUEUED
from packeteer_trio._anyio._readahead import BUDGET, OP_COST

from .conftest import ANYIO_BACKENDS, linux_only, open_fds, posix_only

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


KINDS = ["udp", pytest.param("local", marks=posix_only)]


def _url(kind: str, tmp_path: Path) -> str:
    if kind == "udp":
        return "udp4://127.0.0.1:0"
    return f"local://{tmp_path}/d-{random.randrange(1 << 30)}.sock?behaviour=datagram"


async def _pair(url: str) -> tuple[pa.OSDatagramSocket, pa.OSDatagramChannel]:
    server = await pa.open_datagram(url)
    assert isinstance(server, pa.OSDatagramSocket)
    client = await pa.connect_datagram(server.url)
    assert isinstance(client, pa.OSDatagramChannel)
    return server, client


def _queued(sock: object) -> int:
    """Datagrams the loop has read ahead for *sock* (0 for the lean loops)."""
    queue = getattr(sock, "_queue", None)
    return len(queue) if queue is not None else 0


def _reads_ahead(sock: object) -> bool:
    return getattr(sock, "_queue", None) is not None


async def _until_stalled(progress: Callable[[], int]) -> int:
    """Wait until *progress* stops moving for a whole 0.2 s; its value."""
    stalled_at = -1
    with anyio.fail_after(30):
        while progress() != stalled_at:
            stalled_at = progress()
            await anyio.sleep(0.2)
    return stalled_at


async def _start_reading(
    server: pa.OSDatagramSocket, client: pa.OSDatagramChannel
) -> URL:
    """The client's address as the server sees it; read-ahead has begun."""
    await client.send(b"start")
    data, sender = await server.receive()
    assert data == b"start"
    return sender


@pytest.mark.parametrize("kind", KINDS)
async def test_a_flood_keeps_the_queue_bounded(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """A sender that never stops and a receiver that does: the loop stops
    reading at MAX_QUEUED datagrams, the rest is the kernel's (UDP drops it,
    AF_UNIX makes the sender wait), and receiving again starts it again."""
    server, client = await _pair(_url(kind, tmp_path))
    sent = 0
    peak = 0
    async with server, client, anyio.create_task_group() as group:
        await _start_reading(server, client)

        async def flood() -> None:
            nonlocal sent
            while True:
                await client.send(b"f" * 64)
                sent += 1
                if kind == "udp" and sent % 64 == 0:
                    await anyio.sleep(0.001)  # let the loop read some

        group.start_soon(flood)
        if kind == "local":
            await _until_stalled(lambda: sent)  # the sender waits for room
        else:
            with anyio.fail_after(30):
                while sent < 20 * MAX_QUEUED:
                    await anyio.sleep(0.01)
                    peak = max(peak, _queued(server))
        peak = max(peak, _queued(server))
        assert peak <= MAX_QUEUED, peak
        if _reads_ahead(server):
            assert peak >= MAX_QUEUED // 2  # it did read ahead, up to the bound
        # Receiving again reads again: far more than the bound comes through.
        with anyio.fail_after(30):
            for _ in range(3 * MAX_QUEUED):
                assert (await server.receive())[0] == b"f" * 64
        group.cancel_scope.cancel()


@posix_only
async def test_local_flow_control_loses_nothing(
    tmp_path: Path, anyio_backend: Any
) -> None:
    """Over local:// nothing is dropped: 5,000 numbered datagrams against a
    receiver that pauses now and then arrive all, in order."""
    server, client = await _pair(_url("local", tmp_path))
    count = 5000
    async with server, client, anyio.create_task_group() as group:

        async def produce() -> None:
            for number in range(count):
                await client.send(b"%d" % number)

        group.start_soon(produce)
        with anyio.fail_after(60):
            for number in range(count):
                data, _ = await server.receive()
                assert data == b"%d" % number
                assert _queued(server) <= MAX_QUEUED
                if number % 1000 == 999:
                    await anyio.sleep(0.05)  # the sender fills everything


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelled_receives_lose_nothing(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """Receives cancelled at random moments (before, while and right after
    datagrams come): every datagram the loop read is received once, in order."""
    server, client = await _pair(_url(kind, tmp_path))
    count = 2000
    rng = random.Random(kind)
    got: list[bytes] = []
    cancelled = 0
    async with server, client, anyio.create_task_group() as group:

        async def produce() -> None:
            for number in range(count):
                await client.send(b"%d" % number)
                if number % 32 == 31:
                    await anyio.sleep(0.001)  # UDP: don't outrun the receiver

        group.start_soon(produce)
        with anyio.fail_after(60):
            while len(got) < count:
                with anyio.CancelScope() as scope:
                    if rng.random() < 0.3:
                        scope.cancel()
                    else:
                        scope.deadline = anyio.current_time() + rng.random() / 5000
                    if rng.random() < 0.5:
                        got.append((await server.receive())[0])
                    else:
                        batch = await server.receive_many(rng.choice([1, 7, 64]))
                        got += [data for data, _ in batch]
                cancelled += scope.cancelled_caught
    assert got == [b"%d" % number for number in range(count)]
    assert cancelled > 10


@pytest.mark.parametrize("kind", KINDS)
async def test_oversized_datagrams_are_reported_never_cut(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """A datagram bigger than max_size is an OSError(EMSGSIZE) naming the URL,
    and the next one comes whole; a receive asking for more than 64 KiB gets
    a datagram that big whole (AF_UNIX); one read ahead while receives asked
    for less is reported, never handed over shorter."""
    server, client = await _pair(_url(kind, tmp_path))
    async with server, client:
        sender = await _start_reading(server, client)
        await client.send(b"x" * 100)
        await client.send(b"next")
        with pytest.raises(OSError) as info:
            await server.receive(max_size=99)
        assert info.value.errno == errno.EMSGSIZE
        assert str(server.url) in str(info.value)
        assert (await server.receive(max_size=4))[0] == b"next"
        await client.send(b"y" * 100)
        data, _ = await server.receive(max_size=100)  # exactly fits
        assert data == b"y" * 100
        # The connected side too.
        await server.send((b"z" * 50, sender))
        with pytest.raises(OSError) as info:
            await client.receive(max_size=10)
        assert info.value.errno == errno.EMSGSIZE
        await server.send((b"whole", sender))
        assert await client.receive(max_size=5) == b"whole"
        if kind == "local":
            big = os.urandom(100_000)
            await client.send(big)
            try:
                data, _ = await server.receive(max_size=200_000)
            except OSError as exc:  # pragma: no cover - must not happen
                pytest.fail(f"cut: {exc}")
            assert data == big
            # Now every receive asks for 200,000 bytes or less: the loop reads
            # with room for that, a bigger datagram is reported.
            huge = os.urandom(210_000)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            try:
                await client.send(huge)
            except OSError as exc:  # the kernel's own limit: nothing to test
                pytest.skip(f"cannot send 210,000 bytes here: {exc}")
            await anyio.sleep(0.05)  # read ahead, if it reads ahead
            try:
                data, _ = await server.receive(max_size=300_000)
            except OSError as exc:
                assert exc.errno == errno.EMSGSIZE
                assert _reads_ahead(server)
            else:
                assert data == huge


@pytest.mark.wine_differs(
    reason="Wine 8 keeps the ICMP port-unreachable error in SO_ERROR: recv() "
    "says WSAEWOULDBLOCK and the socket never polls readable (Windows: "
    "WSAECONNRESET from recv())"
)
async def test_connection_refused_in_its_place(anyio_backend: Any) -> None:
    """ICMP port unreachable, seen by a receive already reading: a
    ConnectionRefusedError naming the URL, and the channel stays usable
    (once something listens there, datagrams flow)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody at that port now
    async with await pa.connect_datagram(f"udp4://127.0.0.1:{port}") as channel:
        async with anyio.create_task_group() as group:
            errors: list[BaseException] = []

            async def receive() -> None:
                try:
                    await channel.receive()
                except ConnectionRefusedError as exc:
                    errors.append(exc)

            group.start_soon(receive)
            await anyio.sleep(0.01)  # the receive waits (and reads ahead)
            with anyio.fail_after(10):
                while not errors:
                    try:
                        await channel.send(b"anyone?")
                    except ConnectionRefusedError:
                        pass  # a send may see it first; the receive will too
                    await anyio.sleep(0.01)
        assert f"udp4://127.0.0.1:{port}" in str(errors[0])
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            peer.bind(("127.0.0.1", port))
        except OSError:  # pragma: no cover - someone took the port meanwhile
            peer.close()
            pytest.skip("the port was taken")
        with peer:
            peer.setblocking(False)
            with anyio.fail_after(10):
                while True:  # errors queued before the peer came may come first
                    try:
                        await channel.send(b"hello")
                        await anyio.wait_readable(peer)
                        break
                    except ConnectionRefusedError:
                        await anyio.sleep(0.01)
            data, address = peer.recvfrom(100)
            assert data == b"hello"
            peer.sendto(b"back", address)
            with anyio.fail_after(10):
                while True:
                    try:
                        assert await channel.receive() == b"back"
                        break
                    except ConnectionRefusedError:
                        pass


@pytest.mark.parametrize("kind", KINDS)
async def test_operations_that_do_not_wait_still_yield(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """Sends that never wait and receives of queued datagrams: another task
    still runs at least once per BUDGET // OP_COST such operations, and a
    cancelled scope stops a loop of them before the datagram of the
    operation it stops moved."""
    server, client = await _pair(_url(kind, tmp_path))
    small = BUDGET // OP_COST
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with server, client, anyio.create_task_group() as group:
        sender = await _start_reading(server, client)
        group.start_soon(ticker)
        await anyio.sleep(0.01)
        # In batches of 8: an AF_UNIX receiver's kernel queue holds 10.
        send_ticks = receive_ticks = 0
        for _ in range(small // 2):
            start = ticks
            for _ in range(8):
                await client.send(b"s")
            send_ticks += ticks - start
            await anyio.sleep(0.02)  # all read ahead (if the loop reads ahead)
            start = ticks
            for _ in range(8):
                assert (await server.receive())[0] == b"s"
            receive_ticks += ticks - start
        assert send_ticks >= 3
        assert receive_ticks >= 3
        sent = 0
        with anyio.CancelScope() as scope:
            scope.cancel()
            for _ in range(small * 4):
                await server.send((b"c", sender))
                sent += 1
        assert scope.cancelled_caught
        assert sent < small
        await server.send((b"!", sender))
        got = [await client.receive() for _ in range(sent + 1)]
        assert got == [b"c"] * sent + [b"!"]  # exactly the sends that returned
        group.cancel_scope.cancel()


@pytest.mark.parametrize("kind", KINDS)
async def test_resource_errors(kind: str, tmp_path: Path, anyio_backend: Any) -> None:
    """Two receivers at once: BusyResourceError; a receive waiting when the
    socket closes, and any operation after: ClosedResourceError."""
    server, client = await _pair(_url(kind, tmp_path))
    async with client:
        async with anyio.create_task_group() as group:
            outcome: list[BaseException] = []

            async def waiting_receive() -> None:
                try:
                    await server.receive()
                except anyio.ClosedResourceError as exc:
                    outcome.append(exc)

            group.start_soon(waiting_receive)
            await anyio.sleep(0.01)
            with pytest.raises(anyio.BusyResourceError):
                await server.receive()
            await server.aclose()
        assert len(outcome) == 1
        with pytest.raises(anyio.ClosedResourceError):
            await server.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await server.send((b"x", client.url))
        with pytest.raises(anyio.ClosedResourceError):
            await server.receive_many()


@posix_only
async def test_descriptors_stay_with_their_datagram(
    tmp_path: Path, anyio_backend: Any
) -> None:
    """Descriptors that came while the loop read ahead are kept for
    receive_fds (its sender too); ones that came with a datagram a plain
    receive took, or were still queued at close, are closed, never leaked."""
    before = open_fds()
    server, client = await _pair(_url("local", tmp_path))
    read_end, write_end = os.pipe()
    try:
        async with server, client:
            sender = await _start_reading(server, client)
            await client.send_fds(b"one", [write_end])
            await client.send_fds(b"two", [write_end, write_end])
            await client.send_fds(b"three", [write_end])
            await anyio.sleep(0.05)  # read ahead, descriptors and all
            message, fds, origin = await server.receive_fds_from(3, 1)
            assert (message, len(fds), origin) == (b"one", 1, sender)
            os.write(fds[0], b"!")
            assert os.read(read_end, 1) == b"!"
            os.close(fds[0])
            # More descriptors than maxfds: all closed, the datagram reported.
            with pytest.raises(DescriptorsDropped):
                await server.receive_fds(3, 1)
            # A plain receive drops them, as recv() does.
            assert (await server.receive())[0] == b"three"
            for _ in range(3):  # queued at close: closed with the socket
                await client.send_fds(b"left", [write_end])
            await anyio.sleep(0.05)
        assert open_fds() == before + 2  # the pipe's two ends, nothing else
    finally:
        os.close(read_end)
        os.close(write_end)


@linux_only
async def test_credentials_with_their_datagram(
    tmp_path: Path, anyio_backend: Any
) -> None:
    """On ?passcred=1 every datagram read ahead keeps its sender's
    credentials for receive_with_credentials."""
    url = f"local://{tmp_path}/c.sock?behaviour=datagram&passcred=1"
    server = await pa.open_datagram(url)
    assert isinstance(server, pa.OSDatagramSocket)
    if sys.platform == "win32":  # pragma: no cover - linux_only skips first
        pytest.skip("Linux only")
    client = await pa.connect_datagram(server.url)
    assert isinstance(client, pa.OSDatagramChannel)
    async with server, client:
        await _start_reading(server, client)
        await client.send(b"who")
        await client.send(b"again")
        await anyio.sleep(0.05)
        data, _, credentials = await server.receive_with_credentials()
        assert data == b"who"
        assert (credentials.pid, credentials.uid) == (os.getpid(), os.getuid())
        data, _, credentials = await server.receive_with_credentials()
        assert data == b"again" and credentials.pid == os.getpid()


@pytest.mark.parametrize("kind", KINDS)
async def test_receive_many_takes_what_is_queued(
    kind: str, tmp_path: Path, anyio_backend: Any
) -> None:
    """receive_many takes every datagram already there (up to max_count), and
    an oversized one after the first stays for the next receive to report."""
    server, client = await _pair(_url(kind, tmp_path))
    async with server, client:
        await _start_reading(server, client)
        for number in range(5):
            await client.send(b"%d" % number)
        await client.send(b"x" * 50)
        await client.send(b"after")
        await anyio.sleep(0.05)
        got: list[bytes] = []
        with anyio.fail_after(10):
            while len(got) < 5:
                got += [data for data, _ in await server.receive_many(64, max_size=10)]
        assert got == [b"%d" % number for number in range(5)]
        with pytest.raises(OSError) as info:
            await server.receive_many(64, max_size=10)
        assert info.value.errno == errno.EMSGSIZE
        assert [data for data, _ in await server.receive_many(64)] == [b"after"]

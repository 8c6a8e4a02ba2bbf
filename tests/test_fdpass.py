"""Descriptors over local:// streams and datagram sockets, and per-datagram
credentials: both faces (trio; anyio on asyncio and on trio), another
process at the other end, and no received descriptor ever leaked."""

from __future__ import annotations

import array
import errno
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trio.testing

import packeteer_trio as pt
import packeteer_trio.schemes._seqpacket as _seqpacket
from packeteer_trio import _fdpass
from packeteer_trio import anyio_compat as pa

from .conftest import open_fds

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.posix_only(reason="descriptors pass over AF_UNIX (POSIX)"),
]
ROOT = Path(__file__).parent.parent
if sys.platform == "win32":  # pragma: no cover - for mypy; marked POSIX-only
    pytest.skip("descriptors pass over AF_UNIX (POSIX)", allow_module_level=True)


@pytest.fixture(params=["trio", "anyio-asyncio", "anyio-trio"])
def face(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(face: str) -> str:
    return "asyncio" if face == "anyio-asyncio" else "trio"


def verbs(face: str) -> Any:
    """The face's module of verbs (their return types differ: Any)."""
    return pt if face == "trio" else pa


@asynccontextmanager
async def stream_pair(face: str, url: str) -> AsyncIterator[tuple[Any, Any]]:
    listener = await verbs(face).listen(url)
    async with listener:
        client = await verbs(face).connect(listener.url)
        server = await listener.accept()
        async with client, server:
            yield client, server


@asynccontextmanager
async def datagram_pair(face: str, tmp_path: Path) -> AsyncIterator[tuple[Any, Any]]:
    """A bound socket and a channel connected to it, bound at c.sock."""
    bound = await verbs(face).open_datagram(
        f"local://{tmp_path}/d.sock?behaviour=datagram"
    )
    async with bound:
        channel = await verbs(face).connect_datagram(
            bound.url, local=f"local://{tmp_path}/c.sock"
        )
        async with channel:
            yield bound, channel


def child(role: str, url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests._fdpass_child", role, url], cwd=ROOT
    )


async def finished(process: subprocess.Popen[bytes]) -> int:
    return await anyio.to_thread.run_sync(process.wait, 30)


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


# -- across processes -----------------------------------------------------------


async def test_stream_passes_a_pipe_and_a_socket_to_another_process(
    face: str, tmp_path: Path
) -> None:
    listener = await verbs(face).listen(f"local://{tmp_path}/fds.sock")
    read_fd, write_fd = os.pipe()
    ours, theirs = socket.socketpair()
    async with listener:
        process = child("stream-receive", str(listener.url))
        try:
            with anyio.fail_after(30):
                async with await listener.accept() as stream:
                    await stream.send_fds(b"pipe and socket", [write_fd, theirs])
                    os.close(write_fd)
                    theirs.close()
                    ours.sendall(b"ping")
                    done = b""
                    while len(done) < 4:
                        done += (
                            await stream.receive(4)
                            if face != "trio"
                            else (await stream.receive_some(4))
                        )
                    assert done == b"done"
            assert await finished(process) == 0
        finally:
            process.kill()
            process.wait()
    ours.settimeout(10)
    assert ours.recv(100) == b"PING"  # the child echoed over the passed socket
    assert os.read(read_fd, 100) == b"written by the child"
    os.close(read_fd)
    ours.close()


async def test_datagram_passes_a_pipe_from_another_process(
    face: str, tmp_path: Path
) -> None:
    bound = await verbs(face).open_datagram(
        f"local://{tmp_path}/d.sock?behaviour=datagram"
    )
    async with bound:
        process = child("datagram-send", str(bound.url))
        try:
            with anyio.fail_after(30):
                message, fds, sender = await bound.receive_fds_from(64, 4)
            assert await finished(process) == 0
        finally:
            process.kill()
            process.wait()
    assert message == b"a pipe"
    assert sender.scheme == "local"
    (fd,) = fds
    assert os.read(fd, 100) == b"from the child's pipe"
    assert os.read(fd, 100) == b""  # the child closed its write end
    os.close(fd)


# -- never leaked -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stream", "datagram"])
async def test_cancelled_receives_leak_no_descriptor(
    face: str, kind: str, tmp_path: Path
) -> None:
    """1,000 receives, most cancelled at random moments while a sender
    sends descriptors at random moments: every descriptor sent arrives
    exactly once, and afterwards the process has what it had before."""
    rng = random.Random(19)
    read_fd, write_fd = os.pipe()
    before = open_fds()
    sent = received = 0
    if kind == "stream":
        opened = stream_pair(face, f"local://{tmp_path}/c.sock")
    else:
        opened = datagram_pair(face, tmp_path)
    async with opened as (a, b):
        sender, receiver = (a, b) if kind == "stream" else (b, a)

        async def send_some() -> None:
            nonlocal sent
            for _ in range(300):
                await sender.send_fds(b"x", [write_fd])
                sent += 1
                if rng.random() < 0.5:
                    await anyio.sleep(rng.choice([0, 0.0001, 0.0005]))

        def take(fds: list[int]) -> None:
            nonlocal received
            assert len(fds) == 1
            received += 1
            os.close(fds[0])

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                group.start_soon(send_some)
                for _ in range(1000):
                    with anyio.move_on_after(rng.choice([0, 0, 0.0001, 0.001])):
                        message, fds = await receiver.receive_fds(1, 1)
                        assert message == b"x"
                        take(fds)
            while received < sent:
                take((await receiver.receive_fds(1, 1))[1])
    assert sent == received == 300
    assert open_fds() == before
    os.close(read_fd)
    os.close(write_fd)


async def test_more_descriptors_than_asked_for_are_closed_and_reported(
    face: str, tmp_path: Path
) -> None:
    read_fd, write_fd = os.pipe()
    async with stream_pair(face, f"local://{tmp_path}/m.sock") as (client, server):
        before = open_fds()
        await client.send_fds(b"three", [read_fd, write_fd, read_fd])
        with pytest.raises(pt.DescriptorsDropped, match="maxfds=2") as caught:
            await server.receive_fds(16, 2)
        assert caught.value.message == b"three"  # the bytes are not lost
        assert caught.value.received == 3
        assert not caught.value.truncated
        assert open_fds() == before
        # The stream goes on.
        await client.send_fds(b"one", [write_fd])
        message, fds = await server.receive_fds(16, 2)
        assert message == b"one" and len(fds) == 1
        os.close(fds[0])
    os.close(read_fd)
    os.close(write_fd)


async def test_datagram_truncation_closes_its_descriptors(
    face: str, tmp_path: Path
) -> None:
    read_fd, write_fd = os.pipe()
    async with datagram_pair(face, tmp_path) as (bound, channel):
        before = open_fds()
        await channel.send_fds(b"0123456789", [read_fd, write_fd])
        with pytest.raises(OSError, match="did not fit") as caught:
            await bound.receive_fds(4, 2)
        assert caught.value.errno == errno.EMSGSIZE
        await channel.send_fds(b"two", [read_fd, write_fd])
        with pytest.raises(pt.DescriptorsDropped):
            await bound.receive_fds_from(16, 1)
        assert open_fds() == before
        # A plain receive takes no descriptors: the kernel drops them.
        await channel.send_fds(b"plain", [read_fd])
        data, sender = await bound.receive_from()
        assert (data, sender.path) == (b"plain", f"{tmp_path}/c.sock")
        assert open_fds() == before
        # And both ways: the bound socket answers the channel.
        await bound.send_fds_to(b"back", [write_fd], sender)
        message, fds = await channel.receive_fds(16, 1)
        assert message == b"back" and len(fds) == 1
        os.close(fds[0])
    os.close(read_fd)
    os.close(write_fd)


def test_a_cut_control_buffer_closes_every_descriptor() -> None:
    """MSG_CTRUNC (the kernel had more than fit): none are handed out."""
    fds = [os.dup(0), os.dup(0)]
    ancdata = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    url = pt.URL.parse("local:///x")
    got, _, error = _fdpass.take_ancillary(url, b"m", ancdata, socket.MSG_CTRUNC)
    assert got == []
    assert isinstance(error, pt.DescriptorsDropped)
    assert error.truncated and error.received == 2 and error.message == b"m"
    assert not any(is_open(fd) for fd in fds)


def test_unexpected_control_messages_close_the_descriptors() -> None:
    fds = [os.dup(0)]
    ancdata = [
        (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes()),
        (socket.SOL_SOCKET, 99, b"?"),
    ]
    url = pt.URL.parse("local:///x")
    got, _, error = _fdpass.take_ancillary(url, b"m", ancdata, 0)
    assert got == [] and isinstance(error, RuntimeError)
    assert not is_open(fds[0])


async def test_received_descriptors_are_close_on_exec(
    face: str, tmp_path: Path
) -> None:
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)
    async with stream_pair(face, f"local://{tmp_path}/e.sock") as (client, server):
        await client.send_fds(b"e", [write_fd])
        _, (fd,) = await server.receive_fds(1, 1)
        assert not os.get_inheritable(fd)
        os.close(fd)
    os.close(read_fd)
    os.close(write_fd)


async def test_end_of_file_busy_and_closed(face: str, tmp_path: Path) -> None:
    busy: type[Exception] = anyio.BusyResourceError
    closed: type[Exception] = anyio.ClosedResourceError
    if face == "trio":
        busy, closed = trio.BusyResourceError, trio.ClosedResourceError
    read_fd, write_fd = os.pipe()
    async with stream_pair(face, f"local://{tmp_path}/b.sock") as (client, server):
        async with anyio.create_task_group() as group:
            group.start_soon(server.receive_fds, 1, 1)
            await anyio.sleep(0.05)
            with pytest.raises(busy):
                await server.receive_fds(1, 1)
            group.cancel_scope.cancel()
        await client.send_eof()
        if face == "trio":
            assert await server.receive_fds(1, 1) == (b"", [])
        else:
            with pytest.raises(anyio.EndOfStream):
                await server.receive_fds(1, 1)
        await client.aclose()
        with pytest.raises(closed):
            await client.send_fds(b"x", [write_fd])
    os.close(read_fd)
    os.close(write_fd)


async def test_bad_arguments_are_refused(face: str, tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    async with stream_pair(face, f"local://{tmp_path}/v.sock") as (client, server):
        with pytest.raises(ValueError, match="message"):
            await client.send_fds(b"", [write_fd])
        with pytest.raises(ValueError, match="fds"):
            await client.send_fds(b"x", [])
        with pytest.raises(ValueError, match="maxfds"):
            await server.receive_fds(1, 0)
        with pytest.raises(ValueError, match="msglen"):
            await server.receive_fds(-1, 1)
    async with stream_pair(face, "tcp://127.0.0.1:0") as (client, _):
        if face == "trio":  # anyio's TCP streams have no send_fds at all
            with pytest.raises(pt.PacketeerError, match="only over local://"):
                await client.send_fds(b"x", [write_fd])
    os.close(read_fd)
    os.close(write_fd)


# -- credentials -------------------------------------------------------------------


@pytest.mark.linux_only(reason="SCM_CREDENTIALS is Linux's")
async def test_credentials_of_a_sender_in_another_process(
    face: str, tmp_path: Path
) -> None:
    server = await verbs(face).open_datagram(
        f"local://{tmp_path}/journal.sock?behaviour=datagram&passcred=1"
    )
    async with server:
        process = child("credentials-send", str(server.url))
        try:
            with anyio.fail_after(30):
                data, sender, credentials = await server.receive_with_credentials()
            assert await finished(process) == 0
        finally:
            process.kill()
            process.wait()
    assert data == b"who am I"
    assert isinstance(credentials, pt.Credentials)
    assert credentials == (process.pid, os.getuid(), os.getgid())
    assert credentials.pid != os.getpid()
    assert sender.scheme == "local"


@pytest.mark.linux_only(reason="SCM_CREDENTIALS is Linux's")
async def test_credentials_on_a_connected_channel_and_a_pair(
    face: str, tmp_path: Path
) -> None:
    me = (os.getpid(), os.getuid(), os.getgid())
    bound = await verbs(face).open_datagram(
        f"local://{tmp_path}/peer.sock?behaviour=datagram"
    )
    async with bound:
        me_url = f"local://{tmp_path}/me.sock?behaviour=datagram"
        channel = await verbs(face).connect_datagram(
            f"{bound.url}&passcred=1", local=me_url
        )
        async with channel:
            await bound.send_to(b"to you", me_url)
            assert await channel.receive_with_credentials() == (b"to you", me)
            # A receive that asks for no descriptors closes any that came.
            read_fd, write_fd = os.pipe()
            before = open_fds()
            await bound.send_fds_to(b"fd", [read_fd], me_url)
            assert await channel.receive_with_credentials() == (b"fd", me)
            assert open_fds() == before
            os.close(read_fd)
            os.close(write_fd)
    pair = await verbs(face).open_datagram("local://?behaviour=datagram&passcred=1")
    async with pair:
        await pair.send_to(b"self", pair.url)
        data, _, credentials = await pair.receive_with_credentials()
        assert (data, credentials) == (b"self", me)


async def test_credentials_need_passcred(face: str, tmp_path: Path) -> None:
    bound = await verbs(face).open_datagram(
        f"local://{tmp_path}/n.sock?behaviour=datagram"
    )
    async with bound:
        with pytest.raises(pt.PacketeerError, match=r"passcred=1|only on Linux"):
            await bound.receive_with_credentials()


def test_passcred_url_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pt.InvalidURL, match="datagram sockets"):
        pt.URL.parse("local:///tmp/x.sock?passcred=1")
    with pytest.raises(pt.InvalidURL, match="not a boolean"):
        pt.URL.parse("local:///tmp/x.sock?behaviour=datagram&passcred=maybe")
    monkeypatch.setattr(_seqpacket, "HAS_PASSCRED", False)  # macOS, the BSDs
    with pytest.raises(pt.UnsupportedScheme, match="peer_credentials"):
        pt.URL.parse("local:///tmp/x.sock?behaviour=datagram&passcred=1")


async def test_a_datagram_to_nowhere_fails_without_breaking_the_socket(
    face: str, tmp_path: Path
) -> None:
    read_fd, write_fd = os.pipe()
    async with datagram_pair(face, tmp_path) as (bound, channel):
        with pytest.raises(FileNotFoundError, match="send_fds"):
            await bound.send_fds_to(b"x", [read_fd], f"local://{tmp_path}/nobody")
        await bound.send_fds_to(b"ok", [read_fd], f"local://{tmp_path}/c.sock")
        message, (fd,) = await channel.receive_fds(2, 1)
        assert message == b"ok"
        os.close(fd)
    os.close(read_fd)
    os.close(write_fd)


@pytest.mark.parametrize("face", ["trio"])
async def test_every_descriptor_operation_is_a_checkpoint(
    face: str, tmp_path: Path
) -> None:
    read_fd, write_fd = os.pipe()
    async with stream_pair(face, f"local://{tmp_path}/k.sock") as (client, server):
        with trio.testing.assert_checkpoints():
            await client.send_fds(b"k", [write_fd])
        with trio.testing.assert_checkpoints():  # ready: no wait, still one
            _, (fd,) = await server.receive_fds(1, 1)
        os.close(fd)
    async with datagram_pair(face, tmp_path) as (bound, channel):
        with trio.testing.assert_checkpoints():
            await channel.send_fds(b"k", [write_fd])
        with trio.testing.assert_checkpoints():
            _, (fd,), _ = await bound.receive_fds_from(1, 1)
        os.close(fd)
        with trio.testing.assert_checkpoints():
            await bound.send_fds_to(b"k", [write_fd], f"local://{tmp_path}/c.sock")
        with trio.testing.assert_checkpoints():
            _, (fd,) = await channel.receive_fds(1, 1)
        os.close(fd)
    os.close(read_fd)
    os.close(write_fd)

"""fd://: descriptors handed over by number, and systemd socket activation."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import trio

import packeteer_trio as pt
from packeteer_trio import anyio_compat as pa

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("fd:// is POSIX-only", allow_module_level=True)


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def pair() -> Iterator[tuple[int, socket.socket]]:
    """A connected AF_UNIX pair: (our end as a bare, blocking fd, the peer)."""
    ours, peer = socket.socketpair()
    fd = ours.detach()
    peer.settimeout(5)
    yield fd, peer
    peer.close()
    if is_open(fd):
        os.close(fd)


# -- URLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("fd:///3", "fd:///3"),
        ("fd:///0", "fd:///0"),
        ("fd:///007", "fd:///7"),
        ("fd:///stdin", "fd:///stdin"),
        ("fd:///STDOUT", "fd:///stdout"),
        ("fd:///stderr?behaviour=stream", "fd:///stderr?behaviour=stream"),
        ("fd:///5?behaviour=datagram", "fd:///5?behaviour=datagram"),
        ("fd://listen/web", "fd://listen/web"),
        ("fd://LISTEN/Web.socket", "fd://listen/Web.socket"),
        ("fd://listen/0", "fd://listen/0"),
        ("fd://listen/01", "fd://listen/1"),
    ],
)
def test_url_forms(text: str, canonical: str) -> None:
    url = pt.URL.parse(text)
    assert str(url) == canonical
    assert pt.URL.parse(str(url)) == url


@pytest.mark.parametrize(
    "text",
    [
        "fd:///-1",
        "fd:///abc",
        "fd:///3.0",
        "fd:///3/4",
        "fd:///99999999999",
        "fd://",
        "fd:///",
        "fd://other/x",
        "fd://localhost/3",
        "fd://:3/3",
        "fd://listen",
        "fd://listen/",
        "fd://listen/a/b",
        "fd://listen/a:b",
        "fd:///3?behaviour=bogus",
    ],
)
def test_bad_urls(text: str) -> None:
    with pytest.raises(pt.InvalidURL, match=r"fd:"):
        pt.URL.parse(text)


# -- streams ------------------------------------------------------------------


@pytest.mark.trio
async def test_socket_stream(pair: tuple[int, socket.socket]) -> None:
    fd, peer = pair
    probe = os.dup(fd)  # the same description: shows its mode after we close
    try:
        assert os.get_blocking(probe)
        stream = await pt.connect(f"fd:///{fd}")
        assert isinstance(stream, pt.SocketStream)
        assert stream.fileno() == fd
        assert str(stream.url) == f"fd:///{fd}"
        assert stream.local_address.scheme == "local"
        assert stream.peer_credentials()[0] == os.getpid()
        assert not os.get_blocking(probe)  # trio's way needs O_NONBLOCK
        await stream.send_all(b"ping")
        assert peer.recv(10) == b"ping"
        peer.sendall(b"pong")
        assert await stream.receive_some() == b"pong"
        await stream.send_eof()
        assert peer.recv(10) == b""
        await stream.aclose()
        assert not is_open(fd)  # fd:// takes ownership
        assert os.get_blocking(probe)  # ... and puts the mode back
    finally:
        os.close(probe)


@pytest.mark.trio
async def test_tcp_socket_stream_gets_nodelay() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        fd = client.detach()
        stream = await pt.connect(f"fd:///{fd}")
        assert isinstance(stream, pt.SocketStream)
        assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert stream.peer_address == pt.URL.parse(
            f"tcp4://127.0.0.1:{server.getsockname()[1]}"
        )
        accepted.sendall(b"x")
        assert await stream.receive_some() == b"x"
        await stream.aclose()
        accepted.close()


@pytest.mark.trio
async def test_pipe_ends() -> None:
    read_fd, write_fd = os.pipe()
    probe = os.dup(read_fd)
    try:
        reader = await pt.connect(f"fd:///{read_fd}")
        writer = await pt.connect(f"fd:///{write_fd}")
        assert isinstance(reader, pt.PipeStream)
        assert isinstance(writer, pt.PipeStream)
        assert reader.can_receive and not reader.can_send
        assert writer.can_send and not writer.can_receive
        with pytest.raises(trio.ClosedResourceError, match="no sending side"):
            await reader.send_all(b"x")
        await writer.send_all(b"through the pipe")
        assert await reader.receive_some() == b"through the pipe"
        await writer.aclose()
        assert await reader.receive_some() == b""  # all writers gone: EOF
        assert not os.get_blocking(probe)
        await reader.aclose()
        assert not is_open(read_fd) and not is_open(write_fd)
        assert os.get_blocking(probe)
    finally:
        os.close(probe)


@pytest.mark.trio
async def test_two_way_descriptor(tmp_path: Path) -> None:
    # A FIFO opened read-write is one descriptor for both directions.
    path = tmp_path / "rw.fifo"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR)
    stream = await pt.connect(f"fd:///{fd}")
    assert isinstance(stream, pt.PipeStream)
    assert stream.can_send and stream.can_receive
    await stream.send_all(b"loop")
    assert await stream.receive_some() == b"loop"
    await stream.send_eof()  # closes the writing copy only
    assert stream.can_receive and not stream.can_send
    await stream.aclose()
    assert not is_open(fd)


@pytest.mark.trio
async def test_shared_description_restored_after_last_close() -> None:
    # Two descriptors, one description (like stdin and stdout of a terminal):
    # making it blocking while the other connector reads would hang trio.
    read_fd, write_fd = os.pipe()
    twin = os.dup(read_fd)
    probe = os.dup(read_fd)
    try:
        first = await pt.connect(f"fd:///{read_fd}")
        second = await pt.connect(f"fd:///{twin}")
        await first.aclose()
        assert not os.get_blocking(probe)
        os.write(write_fd, b"still non-blocking")
        assert await second.receive_some() == b"still non-blocking"
        await second.aclose()
        assert os.get_blocking(probe)
    finally:
        os.close(probe)
        os.close(write_fd)


@pytest.mark.trio
async def test_listening_socket() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    fd = server.detach()
    probe = os.dup(fd)
    try:
        listener = await pt.listen(f"fd:///{fd}")
        assert listener.url == pt.URL.parse(f"tcp4://127.0.0.1:{port}")
        assert listener.fileno() == fd
        client = await pt.connect(listener.url)
        accepted = await listener.accept()
        assert isinstance(accepted, pt.SocketStream)
        await client.send_all(b"hello")
        assert await accepted.receive_some() == b"hello"
        for stream in (client, accepted):
            await stream.aclose()
        assert not os.get_blocking(probe)
        await listener.aclose()
        assert not is_open(fd)
        assert os.get_blocking(probe)
    finally:
        os.close(probe)


@pytest.mark.trio
async def test_serve_on_bound_unlistening_socket() -> None:
    # Bound by someone else (a privileged parent, say) but not listening yet.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    fd = sock.detach()

    async def handler(stream: pt.Stream) -> None:
        await stream.send_all(b"served:" + await stream.receive_some())
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(pt.serve, f"fd:///{fd}", handler)
        client = await pt.connect(listeners[0].url)
        await client.send_all(b"x")
        assert await client.receive_some() == b"served:x"
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert not is_open(fd)


@pytest.mark.trio
async def test_datagram_sockets() -> None:
    bound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bound.bind(("127.0.0.1", 0))
    port = bound.getsockname()[1]
    fd = bound.detach()
    with pytest.raises(pt.InvalidURL, match="behaviour=datagram"):
        await pt.open_datagram(f"fd:///{fd}")
    sock = await pt.open_datagram(f"fd:///{fd}?behaviour=datagram")
    assert sock.url == pt.URL.parse(f"udp4://127.0.0.1:{port}")

    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.connect(("127.0.0.1", port))
    other_fd = other.detach()
    chan = await pt.connect_datagram(f"fd:///{other_fd}?behaviour=datagram")
    assert isinstance(chan, pt.DatagramChannel)
    assert chan.url == sock.url

    await chan.send(b"one")
    data, sender = await sock.receive_from()
    assert data == b"one"
    await sock.send_to(b"two", sender)
    assert await chan.receive() == b"two"
    await sock.aclose()
    await chan.aclose()
    assert not is_open(fd) and not is_open(other_fd)


# -- wrong kinds and failures leave the descriptor alone ------------------------


@pytest.mark.trio
async def test_wrong_kind_of_descriptor_is_left_alone(
    pair: tuple[int, socket.socket], tmp_path: Path
) -> None:
    fd, _ = pair
    with pytest.raises(pt.InvalidURL, match="connected socket; use connect"):
        await pt.listen(f"fd:///{fd}")
    with pytest.raises(pt.InvalidURL, match="stream socket"):
        await pt.open_datagram(f"fd:///{fd}?behaviour=datagram")
    assert is_open(fd) and os.get_blocking(fd)

    with socket.create_server(("127.0.0.1", 0)) as server:
        with pytest.raises(pt.InvalidURL, match="listening socket; use listen"):
            await pt.connect(f"fd:///{server.fileno()}")
        assert server.getblocking()

    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(pt.InvalidURL, match="directory"):
            await pt.connect(f"fd:///{directory}")
        with pytest.raises(pt.InvalidURL, match="not a socket"):
            await pt.listen(f"fd:///{directory}")
    finally:
        os.close(directory)

    with pytest.raises(pt.InvalidURL, match="use listen"):
        await pt.connect("fd://listen/web")
    with pytest.raises(pt.InvalidURL, match="not a listening socket"):
        await pt.listen("fd:///stdin")


@pytest.mark.trio
async def test_closed_descriptor_is_an_oserror() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    os.close(write_fd)
    with pytest.raises(OSError, match=f"fd:///{read_fd}: connect failed") as info:
        await pt.connect(f"fd:///{read_fd}")
    assert info.value.errno == errno.EBADF


@pytest.mark.trio
async def test_one_owner_at_a_time(pair: tuple[int, socket.socket]) -> None:
    fd, _ = pair
    stream = await pt.connect(f"fd:///{fd}")
    with pytest.raises(OSError, match="already belongs") as info:
        await pt.connect(f"fd:///{fd}")
    assert info.value.errno == errno.EBUSY
    await stream.aclose()


# -- the standard streams -----------------------------------------------------

STDIO_CHILD = """
import os, sys, trio
import packeteer_trio as pt

async def main():
    stdin = await pt.connect("fd:///stdin")
    stdout = await pt.connect("fd:///stdout")
    assert stdin.can_receive and not stdin.can_send
    assert stdout.can_send and not stdout.can_receive
    while data := await stdin.receive_some():
        await stdout.send_all(data.upper())
    await stdin.aclose()
    await stdout.aclose()
    # Still open (we worked on copies), and blocking again.
    print(os.get_blocking(0), os.get_blocking(1), "after", flush=True)

trio.run(main)
"""


def test_stdin_and_stdout() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STDIO_CHILD],
        input=b"shout this\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"SHOUT THIS\nTrue True after\n"


# -- the anyio face uses the same scheme ----------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_face(backend: str) -> None:
    async def main() -> None:
        ours, peer = socket.socketpair()
        fd = ours.detach()
        probe = os.dup(fd)
        try:
            stream = await pa.connect(f"fd:///{fd}")
            assert isinstance(stream, anyio.abc.SocketStream)
            await stream.send(b"anyio")
            assert peer.recv(10) == b"anyio"
            await stream.aclose()
            assert not is_open(fd) and os.get_blocking(probe)

            server = socket.create_server(("127.0.0.1", 0))
            listen_fd = server.detach()
            listener = await pa.listen(f"fd:///{listen_fd}")
            client = await pa.connect(listener.url)
            accepted = await listener.accept()
            await client.send(b"hi")
            assert await accepted.receive() == b"hi"
            for resource in (client, accepted, listener):
                await resource.aclose()
            assert not is_open(listen_fd)
        finally:
            os.close(probe)
            peer.close()

    anyio.run(main, backend=backend)


# -- socket activation -------------------------------------------------------

# The child plays a socket-activated service. Like a service manager, it
# moves the inherited sockets to 3, 4, … and points LISTEN_PID at itself
# (the environment the parent gave it names the parent's pid: that is what
# a wrong-pid test keeps).
ACTIVATED_CHILD = """
import os, sys
given = [int(fd) for fd in sys.argv[1].split(",")]
for index, fd in enumerate(given):
    if fd != 3 + index:
        os.dup2(fd, 3 + index)
        os.close(fd)
if sys.argv[2] == "own-pid":
    os.environ["LISTEN_PID"] = str(os.getpid())

import trio
import packeteer_trio as pt

async def main():
    try:
        listener = await pt.listen(sys.argv[3])
    except pt.SocketActivationError as exc:
        print("SocketActivationError:", exc, flush=True)
        sys.exit(3)
    served = trio.Event()

    async def handler(stream):
        await stream.send_all(b"served:" + await stream.receive_some())
        await stream.aclose()
        served.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(pt.serve, sys.argv[4], handler)
        stream = await listener.accept()
        await stream.send_all(b"listened:" + await stream.receive_some())
        await stream.aclose()
        await served.wait()
        print("listened on", listener.url, flush=True)
        nursery.cancel_scope.cancel()

trio.run(main)
"""


def run_activated(
    socks: list[socket.socket],
    names: str | None,
    pid: str,
    listen_url: str,
    serve_url: str,
    talk: list[tuple[socket.socket, bytes]],
) -> tuple[int, bytes, list[bytes]]:
    """Run ACTIVATED_CHILD with *socks* passed; return (status, output, replies)."""
    env = dict(os.environ, LISTEN_FDS=str(len(socks)), LISTEN_PID=str(os.getpid()))
    env.pop("LISTEN_FDNAMES", None)
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    fds = [sock.fileno() for sock in socks]
    args = [",".join(map(str, fds)), pid, listen_url, serve_url]
    child = subprocess.Popen(
        [sys.executable, "-c", ACTIVATED_CHILD, *args],
        pass_fds=fds,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        replies = []
        for server, message in talk:
            with socket.create_connection(server.getsockname(), timeout=30) as client:
                client.sendall(message)
                replies.append(client.recv(100))
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, out, replies


def test_socket_activation_by_name_and_index() -> None:
    web = socket.create_server(("127.0.0.1", 0))
    admin = socket.create_server(("127.0.0.1", 0))
    with web, admin:
        status, out, replies = run_activated(
            [web, admin],
            "web:admin",
            "own-pid",
            "fd://listen/admin",
            "fd://listen/0",
            [(admin, b"a"), (web, b"w")],
        )
        assert status == 0, out.decode()
        assert replies == [b"listened:a", b"served:w"]
        admin_port = admin.getsockname()[1]
        assert f"listened on tcp4://127.0.0.1:{admin_port}".encode() in out


def test_socket_activation_serve_reply() -> None:
    web = socket.create_server(("127.0.0.1", 0))
    with web:
        env = dict(os.environ, LISTEN_FDS="1")
        env.pop("LISTEN_FDNAMES", None)  # unnamed: "unknown"
        script = textwrap.dedent(
            """
            import os, sys
            os.dup2(int(sys.argv[1]), 3)
            os.environ["LISTEN_PID"] = str(os.getpid())
            import trio
            import packeteer_trio as pt

            async def main():
                async def handler(stream):
                    await stream.send_all(b"echo:" + await stream.receive_some())
                    await stream.aclose()
                    nursery.cancel_scope.cancel()

                async with trio.open_nursery() as nursery:
                    url = "fd://listen/unknown"
                    listeners = await nursery.start(pt.serve, url, handler)
                    print(listeners[0].url, flush=True)

            trio.run(main)
            """
        )
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(web.fileno())],
            pass_fds=[web.fileno()],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            with socket.create_connection(web.getsockname(), timeout=30) as client:
                client.sendall(b"hi")
                assert client.recv(100) == b"echo:hi"
            out, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0, err.decode()
        assert out.decode().strip() == f"tcp4://127.0.0.1:{web.getsockname()[1]}"


def test_socket_activation_wrong_pid() -> None:
    web = socket.create_server(("127.0.0.1", 0))
    with web:
        status, out, _ = run_activated(
            [web], "web", "parent-pid", "fd://listen/web", "fd://listen/web", []
        )
    assert status == 3, out.decode()
    assert b"SocketActivationError: fd://listen/web: LISTEN_PID=" in out
    assert b"is not this process" in out


@pytest.fixture
def activation_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# These fail before any descriptor is looked at, so they are safe in-process.
@pytest.mark.trio
async def test_socket_activation_errors(activation_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(pt.SocketActivationError, match="LISTEN_FDS is not set"):
        await pt.listen("fd://listen/0")
    activation_env.setenv("LISTEN_FDS", "2")
    with pytest.raises(pt.SocketActivationError, match="LISTEN_PID is not"):
        await pt.listen("fd://listen/0")
    activation_env.setenv("LISTEN_PID", str(os.getpid() + 1))
    with pytest.raises(pt.SocketActivationError, match="is not this process"):
        await pt.listen("fd://listen/0")
    activation_env.setenv("LISTEN_PID", str(os.getpid()))
    activation_env.setenv("LISTEN_FDNAMES", "web")
    with pytest.raises(pt.SocketActivationError, match="1 names for LISTEN_FDS=2"):
        await pt.listen("fd://listen/web")
    activation_env.setenv("LISTEN_FDNAMES", "web:admin")
    with pytest.raises(pt.SocketActivationError, match="has: admin, web"):
        await pt.listen("fd://listen/nope")
    with pytest.raises(pt.SocketActivationError, match="no descriptor 2: 2 were"):
        await pt.listen("fd://listen/2")
    with pytest.raises(pt.SocketActivationError, match="LISTEN_FDS"):
        await pt.open_datagram("fd://listen/7?behaviour=datagram")
    from packeteer_trio.schemes import fd

    assert fd.listen_fds() == [(3, "web"), (4, "admin")]
    activation_env.setenv("LISTEN_FDS", "x")
    with pytest.raises(pt.SocketActivationError, match="not a number"):
        fd.listen_fds()

"""ASGI apps served on packeteer listeners: Listener.detach() and serve_asgi.

The hand-over first: ``detach()`` on both faces gives the listening sockets
away open and closes the listener, whose ``aclose()`` then closes no
descriptor and still removes a ``local://`` socket file that is ours; then
the sequence of issue 17 exactly (detach, hypercorn on ``fd://N``, hypercorn
closes N, our ``aclose``). Then real servers: hypercorn through
``packeteer_trio.http.serve_asgi`` on trio and asyncio, uvicorn on a
detached anyio listener, each asked by real httpx over the same URL
(``packeteer_trio.http.client``): tcp, local:// paths and abstract names,
fd:// socket activation in a child process, TLS by hypercorn (tls+tcp:// and
``https://`` over local://). Descriptors are counted before and after.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import trio
import trustme

import packeteer_trio as pt
from packeteer_trio import anyio_compat as pa
from packeteer_trio import http

from ._asgi_app import make_app
from .conftest import open_fds, posix_only
from .test_cli import ROOT, TIMEOUT, env

pytestmark = pytest.mark.anyio

MEGABYTE = os.urandom(1 << 20)


@pytest.fixture(
    params=[pytest.param("trio", id="trio"), pytest.param("asyncio", id="asyncio")]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture(params=["tcp", "local", "abstract"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A stream listener URL of each socket kind this platform has."""
    if request.param != "tcp" and sys.platform == "win32":
        pytest.skip("AF_UNIX: POSIX-only here")
    if request.param == "abstract" and not sys.platform.startswith("linux"):
        pytest.skip("abstract socket names are Linux-only")
    return {
        "tcp": "tcp4://127.0.0.1:0",
        "local": f"local://{tmp_path}/app.sock",
        "abstract": f"local:///%00packeteer-asgi-{os.getpid()}",
    }[request.param]


async def _listen(url: str) -> Any:
    """A listener of the face this backend runs: trio's on trio, else anyio's."""
    if trio.lowlevel.in_trio_task():
        return await pt.listen(url)
    return await pa.listen(url)


def _accepting(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


# -- detach() ----------------------------------------------------------------------


async def test_detach_hands_over_listening_sockets(url: str) -> None:
    before = open_fds()
    listener = await _listen(url)
    numbers = [sock.fileno() for sock in listener.sockets]
    socks = listener.detach()
    assert [sock.fileno() for sock in socks] == numbers
    assert all(_accepting(sock) and not sock.getblocking() for sock in socks)
    assert listener.sockets == []
    closed = (
        trio.ClosedResourceError
        if isinstance(listener, pt.Listener)
        else anyio.ClosedResourceError
    )
    with pytest.raises(closed):
        await listener.accept()
    with pytest.raises(closed):
        listener.detach()
    # A connection waits in the backlog; aclose() closes nothing: the
    # sockets are still ours to accept it from.
    client = socket.socket(socks[0].family)
    client.connect(socks[0].getsockname())
    await listener.aclose()
    socks[0].setblocking(True)
    conn, _ = socks[0].accept()
    conn.close()
    client.close()
    for sock in socks:
        sock.close()
    assert open_fds() == before


async def test_detach_wakes_a_task_in_accept(url: str) -> None:
    listener = await _listen(url)
    closed: list[BaseException] = []

    async def accept() -> None:
        try:
            await listener.accept()
        except (trio.ClosedResourceError, anyio.ClosedResourceError) as exc:
            closed.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(accept)
        await anyio.wait_all_tasks_blocked()
        socks = listener.detach()
    assert len(closed) == 1
    await listener.aclose()
    for sock in socks:
        sock.close()


async def test_detach_gives_every_family_of_a_name() -> None:
    listener = await _listen("tcp://localhost:0")
    expected = {sock.family for sock in listener.sockets}
    socks = listener.detach()
    assert {sock.family for sock in socks} == expected
    assert all(_accepting(sock) for sock in socks)
    await listener.aclose()
    for sock in socks:
        sock.close()


@posix_only
async def test_detached_local_file_is_removed_by_aclose_if_ours(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    listener = await _listen(f"local://{path}")
    socks = listener.detach()
    for sock in socks:
        sock.close()  # the new owner is done with it
    assert path.exists()  # still the listener's: nothing removed it yet
    await listener.aclose()
    assert not path.exists()


@posix_only
async def test_detached_local_file_replaced_meanwhile_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    listener = await _listen(f"local://{path}")
    socks = listener.detach()
    for sock in socks:
        sock.close()
    path.unlink()
    path.write_text("someone else's file")  # not the socket we bound
    await listener.aclose()
    assert path.read_text() == "someone else's file"


@posix_only
async def test_detach_without_a_socket_raises_and_stays_open(tmp_path: Path) -> None:
    listener = await _listen(f"fifo://{tmp_path}/fifo")
    with pytest.raises(pt.PacketeerError, match="no socket to hand over"):
        listener.detach()
    assert not listener._closed  # still listening: nothing was handed over
    await listener.aclose()
    assert not (tmp_path / "fifo").exists()


async def test_detach_of_a_user_scheme_listener_raises(tmp_path: Path) -> None:
    if not trio.lowlevel.in_trio_task():
        pytest.skip("user schemes are served by the trio face")
    ca = trustme.CA()
    keyfile = tmp_path / "server.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(keyfile)
    async with await pt.listen(f"tls+tcp://127.0.0.1:0?certfile={keyfile}") as tls:
        with pytest.raises(pt.PacketeerError, match="no socket of its own"):
            tls.detach()


@posix_only
async def test_detach_of_fd_listener_lets_the_descriptor_go() -> None:
    """fd:// forgets the descriptor (another fd:// connector may take it
    again) and leaves it non-blocking, as handed over."""
    if sys.platform == "win32":  # (posix_only: for mypy, which cannot see it)
        return
    with socket.socket() as original:
        original.bind(("127.0.0.1", 0))
        original.listen()
        fd = os.dup(original.fileno())
        os.set_blocking(fd, True)
        listener = await _listen(f"fd:///{fd}")
        [sock] = listener.detach()
        await listener.aclose()
        assert sock.fileno() == fd and not os.get_blocking(fd)
        again = await _listen(f"fd:///{sock.detach()}")  # no EBUSY: not ours now
        await again.aclose()
        with pytest.raises(OSError):
            os.fstat(fd)  # the second listener owned and closed it


# -- the hand-over of issue 17, exactly --------------------------------------------


@posix_only
async def test_hypercorn_closing_the_fd_it_got_never_breaks_aclose(
    tmp_path: Path,
) -> None:
    """listen(local://) -> detach() -> hypercorn on fd://N serves a request and
    closes N -> our aclose(): no EBADF, the socket file gone, no fd left."""
    if not trio.lowlevel.in_trio_task():
        pytest.skip("hypercorn.trio")
    from hypercorn.config import Config
    from hypercorn.trio import serve

    path = tmp_path / "app.sock"
    before = open_fds()
    listener = await pt.listen(f"local://{path}")
    [sock] = listener.detach()
    number = sock.detach()  # the bare number, as a user hands it over
    config = Config()
    config.bind = [f"fd://{number}"]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve(make_app(), config, shutdown_trigger=stop.wait)
        )
        async with http.client(f"local://{path}") as client:
            response = await client.post("/echo", content=b"hello")
        assert response.content == b"hello"
        stop.set()
    with pytest.raises(OSError):
        os.fstat(number)  # hypercorn closed it
    await listener.aclose()  # must not raise EBADF nor close anything
    assert not path.exists()
    assert open_fds() == before


# -- serve_asgi: hypercorn on trio and asyncio --------------------------------------


async def test_serve_asgi(url: str) -> None:
    """GET, a 1 MB POST echoed byte for byte, and keep-alive: the second
    request reuses the first one's connection."""
    before = open_fds()
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        bound = await group.start(
            lambda task_status: http.serve_asgi(
                make_app(),
                url,
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        )
        assert isinstance(bound, pt.URL)
        async with http.client(bound) as client:
            first = await client.get("/hello")
            assert first.text == "GET /hello 0"
            echoed = await client.post("/echo", content=MEGABYTE)
            assert echoed.content == MEGABYTE
            assert (
                echoed.extensions["network_stream"]
                is first.extensions["network_stream"]
            )
        stop.set()
    if bound.scheme == "local" and not bound.path.startswith("/\0"):
        assert not os.path.exists(bound.path)
    assert open_fds() == before


@posix_only
async def test_serve_asgi_app_failing_at_startup_leaves_nothing(tmp_path: Path) -> None:
    """hypercorn stops before it takes the sockets (asyncio: the lifespan
    runs first): they are closed all the same, the socket file removed."""
    from hypercorn.utils import LifespanFailureError

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    path = tmp_path / "app.sock"
    before = open_fds()
    with pytest.raises(BaseException) as caught:  # (in a group on trio)
        await http.serve_asgi(app, f"local://{path}")
    assert caught.errisinstance(LifespanFailureError) or caught.group_contains(
        LifespanFailureError
    )
    assert not path.exists()
    assert open_fds() == before


async def test_serve_asgi_https_over_local(tmp_path: Path) -> None:
    """hypercorn's own TLS (its config's certfile) on a local:// socket."""
    if sys.platform == "win32":
        pytest.skip("AF_UNIX paths: POSIX-only here")
    from hypercorn.config import Config

    ca = trustme.CA()
    keyfile = tmp_path / "server.pem"
    ca.issue_cert("myapp.local").private_key_and_cert_chain_pem.write_to_path(keyfile)
    config = Config()
    config.certfile = config.keyfile = str(keyfile)
    verify = ssl.create_default_context()
    ca.configure_trust(verify)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        bound = await group.start(
            lambda task_status: http.serve_asgi(
                make_app(),
                f"local://{tmp_path}/tls.sock",
                config=config,
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        )
        async with http.client(
            bound, verify=verify, base_url="https://myapp.local"
        ) as client:
            response = await client.post("/echo", content=MEGABYTE)
        assert response.content == MEGABYTE
        assert response.url.scheme == "https"
        stop.set()
    assert config.bind == ["127.0.0.1:8000"]  # the caller's config is untouched


async def test_serve_asgi_tls_tcp_url(tmp_path: Path) -> None:
    """tls+tcp://'s certfile= becomes hypercorn's: a tls+tcp:// client talks
    to it over plain http:// requests."""
    if not trio.lowlevel.in_trio_task():
        pytest.skip("the tls+tcp:// client is the trio face's (a user scheme)")
    ca = trustme.CA()
    cafile, keyfile = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(cafile)
    ca.issue_cert("myapp.local").private_key_and_cert_chain_pem.write_to_path(keyfile)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        bound = await group.start(
            lambda task_status: http.serve_asgi(
                make_app(),
                f"tls+tcp://127.0.0.1:0?certfile={keyfile}",
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        )
        client_url = (
            f"tls+tcp://127.0.0.1:{bound.port}?cafile={cafile}&servername=myapp.local"
        )
        async with http.client(client_url) as client:
            response = await client.get("/tls")
        assert response.text == "GET /tls 0"
        stop.set()


async def test_serve_asgi_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(pt.InvalidURL):
        await http.serve_asgi(make_app(), "udp://127.0.0.1:0")
    with pytest.raises(pt.InvalidURL, match="capath"):
        await http.serve_asgi(
            make_app(), f"tls+tcp://127.0.0.1:0?certfile={tmp_path}/x&capath={tmp_path}"
        )
    if sys.platform != "win32":
        before = open_fds()
        with pytest.raises(pt.PacketeerError, match="no socket to hand over"):
            await http.serve_asgi(make_app(), f"fifo://{tmp_path}/fifo")
        assert not (tmp_path / "fifo").exists()
        assert open_fds() == before


# -- fd:// socket activation: a child process started as by systemd -----------------


@posix_only
def test_serve_asgi_socket_activated(tmp_path: Path) -> None:
    with socket.socket() as activated:
        activated.bind(("127.0.0.1", 0))
        activated.listen()
        host, port = activated.getsockname()
        argv = ["-m", "tests._asgi_app", "fd://listen/web", "--activate", "web"]
        server = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env={**env(), "DOC_LISTEN_FD": str(activated.fileno())},
            pass_fds=(activated.fileno(),),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == f"tcp4://{host}:{port}\n"

            async def ask() -> list[httpx.Response]:
                async with http.client(f"tcp://{host}:{port}") as client:
                    echoed = await client.post("/echo", content=MEGABYTE)
                    stopped = await client.get("/stop")
                return [echoed, stopped]

            echoed, stopped = trio.run(ask)
            assert echoed.content == MEGABYTE
            assert stopped.text == "GET /stop 0"
            assert server.wait(timeout=TIMEOUT) == 0, server.stderr
        finally:
            if server.poll() is None:
                server.kill()
            server.communicate(timeout=TIMEOUT)


# -- uvicorn on asyncio, over a detached anyio listener -----------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_uvicorn_on_a_detached_listener(url: str) -> None:
    import uvicorn

    before = open_fds()
    async with await pa.listen(url) as listener:
        # log_config=None: uvicorn's own would replace (and close) the
        # logging handlers of the process, pytest's among them.
        config = uvicorn.Config(make_app(), lifespan="on", log_config=None)
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: server.serve(sockets=listener.detach()))
            async with http.client(listener.url) as client:
                first = await client.get("/hello")
                echoed = await client.post("/echo", content=MEGABYTE)
            server.should_exit = True
        assert first.text == "GET /hello 0"
        assert echoed.content == MEGABYTE
        assert echoed.extensions["network_stream"] is first.extensions["network_stream"]
    if listener.url.scheme == "local" and not listener.url.path.startswith("/\0"):
        assert not os.path.exists(listener.url.path)
    assert open_fds() == before

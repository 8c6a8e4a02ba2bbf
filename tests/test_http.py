"""packeteer_trio.http: real httpx, over every bidirectional stream scheme.

The servers (tests/_http_server.py) run in a thread of their own, so the
client under test runs on trio, asyncio and uvloop against the same server:
an h11 server on a packeteer listener (it counts accepts, and misbehaves on
request) and hypercorn on a packeteer listener's socket. Schemes: tcp4,
tcp6, local:// paths and abstract names, tls+tcp://, fd:// of a connected
socket, and pipe:// on Windows; ``https://`` request URLs over each of them
(TLS started by the backend on whatever carries it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpcore
import httpx
import pytest
import trio
import trustme
from httpx._transports.default import map_httpcore_exceptions

import packeteer_trio as pt
from packeteer_trio import http
from packeteer_trio.http import _stream, _transport

from ._http_server import BIG, H11Server, Hypercorn, summary
from .conftest import (
    ANYIO_BACKENDS,
    WINDOWS,
    linux_only,
    needs_ipv6,
    open_fds,
    posix_only,
)
from .test_signatures import compare

pytestmark = pytest.mark.anyio


@pytest.fixture(params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


windows_only = pytest.mark.skipif(
    not WINDOWS, reason="pipe:// is Windows named pipes (POSIX: UnsupportedScheme)"
)
SCHEMES = [
    pytest.param("tcp4", id="tcp4"),
    pytest.param("tcp6", id="tcp6", marks=needs_ipv6),
    pytest.param("local", id="local", marks=posix_only),
    pytest.param("abstract", id="abstract", marks=linux_only),
    pytest.param("tls+tcp", id="tls+tcp"),
    pytest.param("fd", id="fd", marks=posix_only),
    pytest.param("pipe", id="pipe", marks=windows_only),
]
# What the anyio face (asyncio, uvloop) does not serve: user schemes and
# Windows pipe handles are the trio face's only, and say so.
TRIO_ONLY = {"tls+tcp", "pipe"}
_names = iter(range(1_000_000))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def in_trio() -> bool:
    return trio.lowlevel.in_trio_task()


@contextlib.contextmanager
def served(
    scheme: str,
    tmp_path: Path,
    ca: trustme.CA,
    *,
    tls: ssl.SSLContext | None = None,
    server: type[H11Server] | type[Hypercorn] = H11Server,
) -> Iterator[tuple[Any, str]]:
    """A server on *scheme* and the packeteer URL a client connects to."""
    name = f"pt-http-{os.getpid()}-{next(_names)}"
    listen = {
        "tcp4": "tcp4://127.0.0.1:0",
        "tcp6": "tcp6://[::1]:0",
        "local": f"local://{tmp_path}/{name}.sock",
        "abstract": f"local:///%00{name}",
        "fd": "tcp4://127.0.0.1:0",
        "pipe": f"pipe:///{name}",
    }.get(scheme)
    if scheme == "tls+tcp":
        key = tmp_path / "server.pem"
        ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(key)
        listen = f"tls+tcp://127.0.0.1:0?certfile={key}"
    assert listen is not None, scheme
    running = H11Server(listen, tls=tls) if server is H11Server else server(listen)
    with running:
        bound = running.url
        url = str(bound)
        port = bound.port or 0
        if scheme == "tls+tcp":
            cafile = tmp_path / "ca.pem"
            ca.cert_pem.write_to_path(cafile)
            url = (
                f"tls+tcp://127.0.0.1:{bound.port}?cafile={cafile}&servername=localhost"
            )
        elif scheme == "fd":
            # A connected socket the process has, as if inherited: the
            # connector takes the descriptor (and closes it).
            sock = socket.create_connection((bound.host, port))
            url = f"fd:///{sock.detach()}"
        yield running, url


async def exercise(client: httpx.AsyncClient) -> list[httpx.Response]:
    """GET, a 1 MB POST (byte-exact: length and SHA-256 as received), 3 MB
    down, and the same streamed; the responses."""
    responses = []
    with anyio.fail_after(30):
        response = await client.get("/hello?x=1")
        assert response.status_code == 200
        assert response.content == summary(b"GET", b"/hello?x=1", b"")
        responses.append(response)
        upload = os.urandom(1 << 20)
        response = await client.post("/upload", content=upload)
        assert response.content == summary(b"POST", b"/upload", upload)
        responses.append(response)
        response = await client.get("/big")
        assert response.content == BIG
        responses.append(response)
        async with client.stream("GET", "/big") as streamed:
            parts = [part async for part in streamed.aiter_bytes()]
            responses.append(streamed)
        assert b"".join(parts) == BIG
    return responses


def stream_of(response: httpx.Response) -> http.NetworkStream:
    stream = response.extensions["network_stream"]
    assert isinstance(stream, http.NetworkStream)
    return stream


# -- every scheme: requests, keep-alive, failures, timeouts ------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_requests_and_keep_alive(
    scheme: str, tmp_path: Path, ca: trustme.CA
) -> None:
    with served(scheme, tmp_path, ca) as (server, url):
        async with http.client(url) as client:
            if scheme in TRIO_ONLY and not in_trio():
                with pytest.raises(pt.PacketeerError, match="trio"):
                    await client.get("/hello")
                return
            responses = await exercise(client)
        # Keep-alive: one connection for all four requests.
        assert server.accepted == 1
        assert len({id(stream_of(response)) for response in responses}) == 1
        assert stream_of(responses[0]).url == pt.URL.parse(url)


@pytest.mark.parametrize("scheme", [p for p in SCHEMES if p.values[0] != "tls+tcp"])
async def test_https_over_the_stream(
    scheme: str,
    tmp_path: Path,
    ca: trustme.CA,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    """``https://`` request URLs: TLS (start_tls) on whatever carries it,
    the certificate checked against the request URL's host."""
    if scheme in TRIO_ONLY and not in_trio():
        pytest.skip("pipe:// is served by the trio face only (see the test above)")
    with served(scheme, tmp_path, ca, tls=server_tls) as (server, url):
        base = "https://localhost"
        async with http.client(url, verify=client_tls, base_url=base) as client:
            responses = await exercise(client)
        assert server.accepted == 1
        ssl_object = stream_of(responses[0]).get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("scheme", [p for p in SCHEMES if p.values[0] != "tls+tcp"])
async def test_https_body_ends_at_eof_without_close_notify(
    scheme: str,
    tmp_path: Path,
    ca: trustme.CA,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    """A body framed by the end of the connection, and a server that closes
    without TLS's goodbye (as many do): the body, not a ReadError."""
    if scheme in TRIO_ONLY and not in_trio():
        pytest.skip("the trio face only (test_requests_and_keep_alive)")
    with served(scheme, tmp_path, ca, tls=server_tls) as (_server, url):
        base = "https://localhost"
        async with http.client(url, verify=client_tls, base_url=base) as client:
            response = await client.get("/eof")
    assert response.content == b"the body ends at EOF"


@pytest.mark.parametrize("scheme", [p for p in SCHEMES if p.values[0] != "tls+tcp"])
async def test_https_certificate_checked(
    scheme: str, tmp_path: Path, ca: trustme.CA, server_tls: ssl.SSLContext
) -> None:
    """A certificate from a CA the client does not trust: httpx.ConnectError."""
    if scheme in TRIO_ONLY and not in_trio():
        pytest.skip("the trio face only (test_requests_and_keep_alive)")
    with served(scheme, tmp_path, ca, tls=server_tls) as (_server, url):
        async with http.client(url, base_url="https://localhost") as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get("/hello")


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_server_dies_mid_response(
    scheme: str, tmp_path: Path, ca: trustme.CA
) -> None:
    """Promised 1 MB, sent 1000 bytes and closed: httpx's own exception."""
    if scheme in TRIO_ONLY and not in_trio():
        pytest.skip("the trio face only (test_requests_and_keep_alive)")
    with served(scheme, tmp_path, ca) as (server, url):
        async with http.client(url) as client:
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)) as info:
                await client.get("/die")
            assert "1048576" in str(info.value) or url in str(info.value)
            if scheme == "fd":  # its one connection is gone, and says so
                with pytest.raises(httpx.ConnectError, match="fd:// connects once"):
                    await client.get("/hello")
                return
            # The pool drops the broken connection and makes a new one.
            response = await client.get("/hello")
            assert response.content == summary(b"GET", b"/hello", b"")
        assert server.accepted == 2


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_read_timeout(scheme: str, tmp_path: Path, ca: trustme.CA) -> None:
    if scheme in TRIO_ONLY and not in_trio():
        pytest.skip("the trio face only (test_requests_and_keep_alive)")
    with served(scheme, tmp_path, ca) as (_server, url):
        async with http.client(url) as client:
            with pytest.raises(httpx.ReadTimeout) as info:
                await client.get("/stall", timeout=httpx.Timeout(10, read=0.2))
    assert str(pt.URL.parse(url)) in str(info.value)
    assert isinstance(info.value.__cause__, httpcore.ReadTimeout)


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_write_timeout(scheme: str, tmp_path: Path, ca: trustme.CA) -> None:
    """The server never reads: 64 MB cannot go, httpx.WriteTimeout."""
    if scheme in TRIO_ONLY and not in_trio():
        pytest.skip("the trio face only (test_requests_and_keep_alive)")
    with served(scheme, tmp_path, ca) as (_server, url):
        async with http.client(url) as client:
            with pytest.raises(httpx.WriteTimeout, match="could not send"):
                await client.post(
                    "/sink",
                    content=bytes(64 << 20),
                    timeout=httpx.Timeout(10, write=0.2),
                )


# -- hypercorn ------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme",
    [p for p in SCHEMES if p.values[0] in ("tcp4", "tcp6", "local", "abstract")],
)
async def test_hypercorn(scheme: str, tmp_path: Path, ca: trustme.CA) -> None:
    """hypercorn serving an ASGI app on our listener's socket (handed over
    as fd:// of a duplicate), httpx over the URL."""
    with served(scheme, tmp_path, ca, server=Hypercorn) as (_server, url):
        async with http.client(url) as client:
            responses = await exercise(client)
    assert len({id(stream_of(response)) for response in responses}) == 1


# -- the connection as httpcore sees it -----------------------------------------


@pytest.mark.parametrize(
    "scheme", [p for p in SCHEMES if p.values[0] in ("tcp4", "local", "tls+tcp")]
)
async def test_extra_info(scheme: str, tmp_path: Path, ca: trustme.CA) -> None:
    """As httpcore's own backends answer, and is_readable tells when the
    server closed an idle connection."""
    if scheme in TRIO_ONLY and not in_trio():
        pytest.skip("the trio face only (test_requests_and_keep_alive)")
    with served(scheme, tmp_path, ca) as (server, url):
        bound = server.url
        async with http.client(url) as client:
            stream = stream_of(await client.get("/hello"))
            assert stream.get_extra_info("is_readable") is False  # idle, open
            assert stream.get_extra_info("ssl_object") is None
            assert stream.get_extra_info("no such thing") is None
            if scheme == "local":
                assert stream.get_extra_info("server_addr") == bound.path
            else:
                assert stream.get_extra_info("server_addr") == (bound.host, bound.port)
                host, port = stream.get_extra_info("client_addr")
                assert host == "127.0.0.1" and isinstance(port, int)
            sock = stream.get_extra_info("socket")
            if scheme == "tls+tcp":  # the trio face's socket is its own
                assert sock is None
            else:
                assert isinstance(sock, socket.socket)
                assert sock.getpeername() == stream.get_extra_info("server_addr")
            server.stop()  # closes every connection
            with anyio.fail_after(10):
                while not stream.get_extra_info("is_readable"):
                    await anyio.sleep(0.01)


@linux_only
async def test_no_descriptor_leaks(tmp_path: Path, ca: trustme.CA) -> None:
    """Requests, a cancelled one, a failed one, the client closed: every
    descriptor is given back (counted with the server stopped: it still
    holds the stalled request's connection until then)."""
    before = open_fds()
    with served("local", tmp_path, ca) as (_server, url):
        async with http.client(url) as client:
            await exercise(client)
            with anyio.move_on_after(0.2):
                await client.get("/stall")
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/die")
    assert open_fds() == before


# -- connecting ------------------------------------------------------------------


@posix_only
async def test_connect_error_names_the_url(tmp_path: Path) -> None:
    url = f"local://{tmp_path}/nobody.sock"
    async with http.client(url) as client:
        with pytest.raises(httpx.ConnectError, match=str(tmp_path)) as info:
            await client.get("/")
    assert isinstance(info.value.__cause__, httpcore.ConnectError)


async def test_connection_refused() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with http.client(f"tcp4://127.0.0.1:{port}") as client:
        with pytest.raises(httpx.ConnectError, match=f"127.0.0.1:{port}"):
            await client.get("/")


@posix_only
async def test_socket_options_are_set(tmp_path: Path, ca: trustme.CA) -> None:
    option = (socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    with served("tcp4", tmp_path, ca) as (_server, url):
        async with http.client(url, socket_options=[option]) as client:
            stream = stream_of(await client.get("/hello"))
            sock = stream.get_extra_info("socket")
            # (Linux doubles what it is asked for; other systems keep it.)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) in (
                65536,
                131072,
            )


@posix_only
async def test_fd_limits_the_pool_to_its_one_connection(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """Concurrent requests over fd:// wait for the one connection."""
    with served("fd", tmp_path, ca) as (server, url):
        async with http.client(url) as client:
            results: list[bytes] = []

            async def get(index: int) -> None:
                results.append((await client.get(f"/{index}")).content)

            async with anyio.create_task_group() as group:
                for index in range(5):
                    group.start_soon(get, index)
    assert sorted(results) == sorted(summary(b"GET", b"/%d" % i, b"") for i in range(5))
    assert server.accepted == 1


@posix_only
async def test_fd_after_the_server_closed(tmp_path: Path, ca: trustme.CA) -> None:
    with served("fd", tmp_path, ca) as (_server, url):
        async with http.client(url) as client:
            assert (await client.get("/close")).status_code == 200
            with pytest.raises(httpx.ConnectError, match="fd:// connects once"):
                await client.get("/hello")


# -- the API's edges ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["local:///x?behaviour=datagram", "nosuch://x", "tcp4://[::1]:1", "x"]
)
def test_bad_urls_fail_when_made(url: str) -> None:
    with pytest.raises(pt.InvalidURL, match=url.split(":")[0]):
        http.client(url)
    with pytest.raises(pt.InvalidURL):
        http.URLBackend(url)


async def test_a_datagram_scheme_fails_on_first_use() -> None:
    """(The URL alone does not tell udp:// is datagrams; the face does.)"""
    async with http.client("udp://127.0.0.1:1") as client:
        with pytest.raises(pt.InvalidURL, match="connect_datagram"):
            await client.get("/")


def test_client_refuses_what_would_go_elsewhere() -> None:
    with pytest.raises(TypeError, match="transport="):
        http.client("tcp://127.0.0.1:1", transport=httpx.AsyncHTTPTransport())
    with pytest.raises(TypeError, match="proxy="):
        http.client("tcp://127.0.0.1:1", proxy="http://127.0.0.1:3128")


def test_client_passes_the_rest_to_httpx() -> None:
    client = http.client(
        "tcp://127.0.0.1:1", headers={"x-test": "1"}, timeout=3, base_url="http://a"
    )
    assert client.headers["x-test"] == "1"
    assert client.timeout == httpx.Timeout(3)
    assert client.base_url == httpx.URL("http://a")
    assert http.client("tcp://127.0.0.1:1").base_url == httpx.URL("http://localhost")


_CORE_EXCEPTIONS = [
    value
    for name in httpcore.__all__
    if isinstance(value := getattr(httpcore, name), type)
    and issubclass(value, Exception)
]


@pytest.mark.parametrize("error", _CORE_EXCEPTIONS, ids=lambda e: e.__name__)
def test_exceptions_map_as_httpx_maps_them(error: type[Exception]) -> None:
    """Our table gives what httpx's own transport gives, for every httpcore
    exception (ConnectionNotAvailable, the pool's own, passes both)."""

    def outcome(mapping: Any) -> tuple[type[BaseException], str]:
        try:
            with mapping():
                raise error("what went wrong")
        except Exception as exc:
            return type(exc), str(exc)
        raise AssertionError("nothing raised")

    ours = outcome(_transport.httpx_exceptions)
    assert ours == outcome(map_httpcore_exceptions)
    if error is not httpcore.ConnectionNotAvailable:
        assert issubclass(ours[0], httpx.TransportError)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (http.NetworkStream, httpcore.AsyncNetworkStream),
        (http.URLBackend, httpcore.AsyncNetworkBackend),
        (http.URLTransport, httpx.AsyncBaseTransport),
        (_stream.TrioFaceStream, anyio.abc.ByteStream),
    ],
    ids=lambda cls: cls.__name__,
)
def test_signatures_are_the_interfaces(ours: type, theirs: type) -> None:
    """httpcore and httpx call by keyword (``read(max_bytes=…)``,
    ``connect_tcp(host=…, port=…, timeout=…)``): same names, same order."""
    import inspect

    checked = 0
    for name, function in vars(theirs).items():
        if (name.startswith("_") and name != "__aenter__") or not callable(function):
            continue
        mine = inspect.getattr_static(ours, name)
        if mine is function:
            continue
        problem = compare(inspect.signature(mine), inspect.signature(function))
        assert problem is None, f"{ours.__name__}.{name}: {problem}"
        checked += 1
    assert checked


def test_core_never_imports_it() -> None:
    code = (
        "import sys, packeteer_trio, packeteer_trio.anyio_compat, "
        "packeteer_trio.scheduler, packeteer_trio.cli\n"
        "assert 'packeteer_trio.http' not in sys.modules\n"
        "assert 'httpx' not in sys.modules and 'httpcore' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_httpx_the_error_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['httpx'] = None\n"  # as if not installed
        "try:\n"
        "    import packeteer_trio.http\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'packeteer-trio[http]'" in result.stdout
    assert "packeteer_trio.http needs httpx" in result.stdout


async def test_repr() -> None:
    transport = http.URLTransport("tcp://localhost:80")
    assert repr(transport) == "URLTransport('tcp://localhost:80')"
    assert repr(transport.backend) == "URLBackend('tcp://localhost:80')"
    assert transport.url == pt.URL.parse("tcp://localhost:80")
    await transport.aclose()

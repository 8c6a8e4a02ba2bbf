"""tls+tcp://: the worked example of a scheme added through the public registry."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import trio
import trustme

import packeteer_trio as pt
from packeteer_trio import anyio_compat as pa
from packeteer_trio import tls


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1", "::1")


@pytest.fixture
def contexts(
    ca: trustme.CA, server_cert: trustme.LeafCert
) -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    """``tls-test+tcp://`` registered with contexts trusting a fresh CA."""
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server)
    tls.register("tls-test+tcp", client_context=client, server_context=server)
    yield client, server
    pt.unregister_scheme("tls-test+tcp")


@pytest.fixture
def pem_files(
    tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert
) -> dict[str, Path]:
    # Mixed case on purpose: query values are lower-cased, file paths must not be.
    folder = tmp_path / "Certs"
    folder.mkdir()
    files = {
        "ca": folder / "CA.pem",
        "cert": folder / "Server.pem",
        "key": folder / "Server.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    return files


async def echo_once(listener: pt.Listener) -> None:
    stream = await listener.accept()
    async with stream:
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # the client gave up in the handshake: what some tests want


@pytest.fixture
async def echo_server(
    contexts: object, nursery: trio.Nursery
) -> AsyncIterator[pt.Listener]:
    listener = await pt.listen("tls-test+tcp://127.0.0.1:0")
    nursery.start_soon(echo_once, listener)
    yield listener
    await listener.aclose()


@pytest.mark.trio
async def test_round_trip(echo_server: pt.Listener) -> None:
    listener = echo_server
    assert isinstance(listener, pt.WrappedListener)
    assert isinstance(listener.wrapped, trio.SSLListener)
    assert listener.url.scheme == "tls-test+tcp"
    assert listener.url.port != 0  # filled in from the tcp listener
    assert listener.sockets and listener.fileno() == listener.sockets[0].fileno()

    stream = await pt.connect(listener.url)
    assert isinstance(stream, pt.WrappedStream)
    assert isinstance(stream.wrapped, trio.SSLStream)
    assert isinstance(stream.transport, pt.SocketStream)
    assert stream.peer_address == pt.URL.parse(f"tcp4://127.0.0.1:{listener.url.port}")
    assert stream.fileno() == stream.transport.fileno()
    assert stream.wrapped.getpeercert()["subjectAltName"]
    await stream.send_all(b"secret")
    assert await stream.receive_some() == b"secret"
    buffer = bytearray(10)
    await stream.send_all(b"again")
    assert await stream.receive_into(buffer) == 5
    assert bytes(buffer[:5]) == b"again"

    assert not stream.can_send_eof
    with pytest.raises(pt.PacketeerError, match="cannot half-close"):
        await stream.send_eof()
    await stream.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"x")


@pytest.mark.trio
async def test_serve(contexts: object) -> None:
    async def handler(stream: pt.Stream) -> None:
        assert isinstance(stream, pt.WrappedStream)
        await stream.send_all(b"tls:" + await stream.receive_some())
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(pt.serve, "tls-test+tcp://localhost:0", handler)
        url = listeners[0].url
        assert url.host == "localhost"  # the name the certificate is checked for
        for _ in range(3):
            async with await pt.connect(url) as stream:
                await stream.send_all(b"hi")
                assert await stream.receive_some() == b"tls:hi"
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_files_in_the_query(pem_files: dict[str, Path]) -> None:
    cert, key, ca = pem_files["cert"], pem_files["key"], pem_files["ca"]
    listener = await pt.listen(f"tls+tcp://127.0.0.1:0?certfile={cert}&keyfile={key}")
    assert listener.url.query["certfile"] == str(cert)  # the case survived
    port = listener.url.port
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo_once, listener)
        url = f"tls+tcp://localhost:{port}?cafile={ca}"
        async with await pt.connect(url) as stream:
            await stream.send_all(b"from files")
            assert await stream.receive_some() == b"from files"
    await listener.aclose()


@pytest.mark.trio
async def test_untrusted_certificate_is_a_clear_error(
    echo_server: pt.Listener,
) -> None:
    # The default tls+tcp:// trusts the system's CAs, not the test CA.
    url = f"tls+tcp://localhost:{echo_server.url.port}"
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await pt.connect(url)
    message = str(info.value)
    assert url in message
    assert "TLS handshake failed" in message
    assert "certificate" in message
    assert info.value.verify_code != 0


@pytest.mark.trio
async def test_wrong_host_name_is_a_clear_error(echo_server: pt.Listener) -> None:
    url = echo_server.url.replace(query={"servername": "wrong.example"})
    with pytest.raises(ssl.SSLCertVerificationError, match=r"wrong\.example"):
        await pt.connect(url)


@pytest.mark.trio
async def test_configuration_errors(
    contexts: object, pem_files: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(pt.InvalidURL, match="needs a certificate"):
        await pt.listen("tls+tcp://127.0.0.1:0")
    with pytest.raises(pt.InvalidURL, match="keyfile= needs certfile="):
        pt.URL.parse("tls+tcp://localhost:1?keyfile=/k.pem")
    with pytest.raises(pt.InvalidURL, match="as a tcp:// URL"):
        pt.URL.parse("tls+tcp://localhost/some/path")
    with pytest.raises(pt.InvalidURL, match="would be ignored"):
        await pt.connect(f"tls-test+tcp://localhost:1?cafile={pem_files['ca']}")
    missing = tmp_path / "nope.pem"
    with pytest.raises(FileNotFoundError, match=r"tls\+tcp://.*loading"):
        await pt.connect(f"tls+tcp://localhost:1?cafile={missing}")


def test_user_schemes_are_trio_only(contexts: object) -> None:
    async def main() -> None:
        with pytest.raises(pt.InvalidURL, match=r"register_scheme.*trio"):
            await pa.connect("tls-test+tcp://localhost:1")

    anyio.run(main, backend="asyncio")

"""tls+tcp:// — TLS over tcp://, a scheme added through the public registry.

The worked example of ``docs/extending.md``: this module uses only
packeteer_trio's public API (``register_scheme``, ``connect``, ``listen``,
``URL``, ``InvalidURL``), exactly as code outside the package would. It is
registered by default as ``tls+tcp``; :func:`register` adds it under other
names, over other stream transports (``tcp4``, ``local``, …), or with your
own :class:`ssl.SSLContext` objects. The package does not import this
module: the registry does, on the first use of a ``tls+tcp://`` URL (or
import it yourself to call :func:`register`).

``tls+tcp://HOST:PORT`` takes these query options:

- ``cafile=PATH``, ``capath=DIR``: whom to trust. A client checks the
  server against them (default: the system's trust store); a server then
  requires client certificates issued by them (mutual TLS).
- ``certfile=PATH`` (and ``keyfile=PATH`` if the key is separate): our own
  certificate. Required to listen; a client certificate for ``connect``.
- ``servername=NAME``: the name the server's certificate must match, sent as
  SNI (default: HOST). Needed when HOST is an address the certificate does
  not list.

File paths keep their case (the generic URL rules lower-case query values);
the files are read when connecting or listening, not when parsing.

``connect`` finishes the handshake before it returns, so a certificate
problem surfaces there, as :exc:`ssl.SSLCertVerificationError` (an OSError)
whose message names the URL and the reason. ``listen`` hands out streams
whose handshake happens on first use, as :class:`trio.SSLListener` does, so
a slow client cannot stall ``accept``; a failed handshake then shows up as
:exc:`trio.BrokenResourceError` in the handler.

The streams are :class:`trio.SSLStream` objects over packeteer's tcp
streams, seen through :class:`~packeteer_trio.WrappedStream`:
``stream.wrapped.getpeercert()``, ``stream.peer_address``. TLS cannot
half-close, so ``send_eof()`` raises; close the stream when done.
"""

from __future__ import annotations

import os
import ssl
from urllib.parse import unquote

import trio

# The public API only: this is what a scheme written outside the package sees.
import packeteer_trio as pt
from packeteer_trio import URL, InvalidURL

FILE_OPTIONS = ("cafile", "capath", "certfile", "keyfile")


class TLSScheme:
    """A :class:`~packeteer_trio.StreamSchemeFactory` for TLS over *transport*.

    A context given here is used as it is; the URL's file options then
    are an error (they would be ignored). Without one, contexts are built
    from the URL's options with :func:`ssl.create_default_context` and
    cached while the files do not change.
    """

    def __init__(
        self,
        *,
        transport: str = "tcp",
        client_context: ssl.SSLContext | None = None,
        server_context: ssl.SSLContext | None = None,
    ) -> None:
        self.transport = transport
        self.client_context = client_context
        self.server_context = server_context
        self._contexts: dict[tuple[object, ...], ssl.SSLContext] = {}

    def __repr__(self) -> str:
        return f"TLSScheme(transport={self.transport!r})"

    # -- URL rules -------------------------------------------------------------

    def transport_url(self, url: URL) -> URL:
        """The URL of the stream under the TLS layer: ``tcp://HOST:PORT``."""
        return url.replace(scheme=self.transport, query={}, fragment="")

    def validate(self, url: URL, text: str) -> URL:
        """The transport's URL rules, plus ours; file paths keep their case."""
        try:
            inner = URL.parse(str(self.transport_url(url)))
        except InvalidURL as exc:
            raise InvalidURL(f"{text!r}: as a {self.transport}:// URL: {exc}") from None
        options = dict(url.query)
        options.update(_file_options(text))
        if "keyfile" in options and "certfile" not in options:
            raise InvalidURL(f"{text!r}: keyfile= needs certfile= too")
        return url.replace(
            host=inner.host, port=inner.port, path=inner.path, query=options
        )

    # -- the factory protocol ----------------------------------------------------

    async def connect(self, url: URL) -> trio.SSLStream[pt.Stream]:
        """Connect the transport, then finish the TLS handshake."""
        context = await self._context(url, server=False)
        servername = url.query.get("servername") or url.host or None
        if servername is None and context.check_hostname:
            raise InvalidURL(
                f"{url}: no host name to check the server's certificate "
                "against; add ?servername=NAME"
            )
        try:
            transport = await pt.connect(self.transport_url(url))
        except OSError as exc:
            raise _with_url(exc, url, "connecting the transport") from exc
        stream = trio.SSLStream(transport, context, server_hostname=servername)
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(stream)
            raise _handshake_error(exc, url, servername) from exc
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    async def listen(
        self, url: URL, backlog: int | None
    ) -> trio.SSLListener[pt.Stream]:
        """Listen on the transport; each accepted stream handshakes on first use."""
        context = await self._context(url, server=True)
        try:
            transport = await pt.listen(self.transport_url(url), backlog=backlog)
        except OSError as exc:
            raise _with_url(exc, url, "listening on the transport") from exc
        return trio.SSLListener(transport, context)

    # -- contexts -----------------------------------------------------------------

    async def _context(self, url: URL, *, server: bool) -> ssl.SSLContext:
        given = self.server_context if server else self.client_context
        files = {key: url.query[key] for key in FILE_OPTIONS if key in url.query}
        if given is not None:
            if files:
                side = "server" if server else "client"
                raise InvalidURL(
                    f"{url}: this {url.scheme}:// was registered with a "
                    f"{side}_context, so {', '.join(files)}= would be ignored"
                )
            return given
        if server and "certfile" not in files:
            raise InvalidURL(
                f"{url}: a TLS server needs a certificate: add ?certfile=PATH "
                "(and keyfile=PATH), or register the scheme with server_context="
            )
        key = (
            server,
            *sorted((name, path, _mtime(path)) for name, path in files.items()),
        )
        context = self._contexts.get(key)
        if context is None:
            # Reading certificates (and the system trust store) blocks.
            context = await trio.to_thread.run_sync(_build_context, url, server, files)
            self._contexts[key] = context
        return context


def _file_options(text: str) -> dict[str, str]:
    """The file options as written in *text*, before lower-casing."""
    query = text.partition("#")[0].partition("?")[2]
    found = {}
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        key = unquote(key, errors="surrogateescape").lower()
        if eq and key in FILE_OPTIONS:
            found[key] = unquote(value, errors="surrogateescape")
    return found


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None  # _build_context reports it


def _build_context(url: URL, server: bool, files: dict[str, str]) -> ssl.SSLContext:
    purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
    trust = "cafile/capath"
    try:
        context = ssl.create_default_context(
            purpose, cafile=files.get("cafile"), capath=files.get("capath")
        )
        if "certfile" in files:
            trust = f"certfile={files['certfile']}"
            context.load_cert_chain(files["certfile"], files.get("keyfile"))
    except OSError as exc:  # also ssl.SSLError: a bad PEM file
        raise _with_url(exc, url, f"loading {trust}") from exc
    if server and ("cafile" in files or "capath" in files):
        context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    return context


def _with_url(exc: OSError, url: URL, action: str) -> OSError:
    """An OSError of the same class and errno whose message names the URL."""
    message = f"{url}: {action} failed: {exc.strerror or exc}"
    try:
        return type(exc)(exc.errno, message)
    except TypeError:  # pragma: no cover
        return OSError(exc.errno, message)


def _handshake_error(
    exc: trio.BrokenResourceError, url: URL, servername: str | None
) -> Exception:
    """The ssl error under trio's BrokenResourceError, with the URL in it."""
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = f"{cause.verify_message} (checking the certificate for {servername!r})"
    elif isinstance(cause, ssl.SSLError):
        detail = cause.reason or str(cause)
    else:
        return trio.BrokenResourceError(
            f"{url}: TLS handshake failed: the connection broke ({cause or exc})"
        )
    error = type(cause)(cause.errno, f"{url}: TLS handshake failed: {detail}")
    for name in ("library", "reason", "verify_code", "verify_message"):
        if hasattr(cause, name):
            setattr(error, name, getattr(cause, name))
    return error


def register(
    name: str = "tls+tcp",
    *,
    transport: str = "tcp",
    client_context: ssl.SSLContext | None = None,
    server_context: ssl.SSLContext | None = None,
    replace: bool = False,
) -> TLSScheme:
    """Register TLS over *transport* as ``name://``; return the factory.

    ``tls+tcp`` is registered at import with the defaults; to give it your
    own contexts, call ``register(client_context=..., replace=True)``, or
    pick a new name (``register("mytls", server_context=...)``).
    """
    scheme = TLSScheme(
        transport=transport,
        client_context=client_context,
        server_context=server_context,
    )
    pt.register_scheme(name, scheme, validate=scheme.validate, replace=replace)
    return scheme


register()

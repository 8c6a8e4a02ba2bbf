"""Serving an ASGI app with hypercorn on any packeteer stream listener.

We listen (so every stream scheme and its checks are ours: ``local://``'s
stale-file rules and ``?mode=``, ``fd://listen/NAME`` socket activation),
hand the listening sockets to hypercorn (:meth:`Listener.detach`), and run
hypercorn's own ``serve`` on trio or asyncio. hypercorn takes ready sockets
through its config's ``create_sockets()``, which it calls once when it
starts; the config we give it answers with ours, so no descriptor number
ever travels as an ``fd://N`` string that nobody would close if hypercorn
failed before taking it.
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import trio

from packeteer_trio import URL, InvalidURL, anyio_compat

if TYPE_CHECKING:
    import hypercorn.config
    from hypercorn.config import Config


def _hypercorn_config() -> type[Config]:
    # Imported when serving, so that packeteer_trio.http needs no hypercorn.
    try:
        from hypercorn.config import Config
    except ImportError as exc:  # pragma: no cover - tested in a subprocess
        raise ImportError(
            f"packeteer_trio.http.serve_asgi needs hypercorn, which is not "
            f"installed ({exc}); install the extra: pip install "
            "'packeteer-trio[asgi]'",
            name=exc.name,
        ) from exc
    return Config


@functools.cache
def _handing_over() -> Callable[[Config, list[socket.socket]], Config]:
    from hypercorn.config import Config, Sockets

    class HandedOver(Config):
        """The caller's config (a copy), serving the sockets we listened on."""

        def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
            vars(self).update(vars(config))
            self.bind = []
            self.insecure_bind = []
            self.quic_bind = []
            self._handed_over = sockets

        def create_sockets(self) -> Sockets:
            # With a certificate (ssl_enabled) hypercorn speaks TLS on the
            # "secure" sockets, plain HTTP on the "insecure" ones.
            if self.ssl_enabled:
                return Sockets(list(self._handed_over), [], [])
            return Sockets([], list(self._handed_over), [])

    return HandedOver


def _tls_transport(url: URL, config: Config) -> URL:
    """For ``tls+tcp://``: the tcp:// URL to listen on, the URL's TLS
    options set as hypercorn's (which does the TLS)."""
    options = url.query
    if "capath" in options:
        raise InvalidURL(
            f"{url}: hypercorn takes no capath=; name the CA certificates with cafile="
        )
    certfile = options.get("certfile")
    if certfile is None:
        raise InvalidURL(f"{url}: a TLS server needs a certificate: add ?certfile=PATH")
    config.certfile = certfile
    config.keyfile = options.get("keyfile", certfile)
    if "cafile" in options:  # as tls+tcp:// itself: clients must show one
        config.ca_certs = options["cafile"]
        config.verify_mode = ssl.CERT_REQUIRED
    return url.replace(scheme="tcp", query={}, fragment="")


async def serve_asgi(
    app: Any,
    url: str | URL,
    *,
    config: hypercorn.config.Config | None = None,
    backlog: int | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: anyio.abc.TaskStatus[URL] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI *app* with hypercorn on the stream URL *url*.

    Runs until cancelled, or until *shutdown_trigger* (as hypercorn's)
    returns; under trio with ``hypercorn.trio``, under asyncio (and uvloop)
    with ``hypercorn.asyncio``. *config* is hypercorn's (a copy is used):
    everything but its binds, which are *url*'s. With its ``certfile`` and
    ``keyfile`` set, hypercorn serves ``https://`` on *url*; a
    ``tls+tcp://`` URL sets them from its ``certfile=``/``keyfile=``
    (``cafile=``: client certificates are required, as the scheme does).
    ``task_status.started`` gets the listener's ``url`` (the real port) once
    it listens. A ``local://`` socket file is removed when serving ends, if
    it is still ours. A listener without a socket (``pipe://``, ``fifo://``)
    raises PacketeerError: hypercorn serves sockets only.
    """
    target = url if isinstance(url, URL) else URL.parse(url)
    copied = _hypercorn_config()()
    if config is not None:
        vars(copied).update(vars(config))
    config = copied
    if target.scheme == "tls+tcp":
        target = _tls_transport(target, config)
    listener = await anyio_compat.listen(target, backlog=backlog)
    async with listener:
        sockets = listener.detach()
        try:
            handed = _handing_over()(config, sockets)
            task_status.started(listener.url)
            if trio.lowlevel.in_trio_task():
                from hypercorn.trio import serve as serve_on_trio

                await serve_on_trio(app, handed, shutdown_trigger=shutdown_trigger)
            else:
                from hypercorn.asyncio import serve as serve_on_asyncio

                await serve_on_asyncio(app, handed, shutdown_trigger=shutdown_trigger)
        finally:
            # hypercorn holds these very objects (never their numbers), and
            # closing a socket object twice is harmless: whether or not it
            # got them, or closed them, nothing stays open.
            for sock in sockets:
                sock.close()

"""HTTP over any packeteer stream URL, with httpx (the ``[http]`` extra).

::

    from packeteer_trio import http

    async with http.client("local:///var/run/docker.sock") as client:
        response = await client.get("/version")

Every request of that client travels over connections opened to the
packeteer URL (``local://``, ``pipe://``, ``fd://``, ``tcp://``,
``tls+tcp://``, …), whatever host the request URL names; the request URL
gives only the ``Host`` header and, for ``https://``, the name TLS checks.
Connection pooling, keep-alive, timeouts and HTTP itself are httpx's and
httpcore's:

- :func:`client` — an :class:`httpx.AsyncClient` over a URL;
- :class:`URLTransport` — the httpx transport it uses (for ``mounts=`` or
  your own client);
- :class:`URLBackend` — the httpcore network backend under it (for
  :class:`httpcore.AsyncConnectionPool` and httpcore users);
- :class:`NetworkStream` — what the backend's connects return;
- :func:`serve_asgi` — the server side: an ASGI app served by hypercorn
  on any stream listener (needs hypercorn: the ``[asgi]`` extra).

Works under trio, asyncio and uvloop. This module sits beside the package's
verbs and uses only their public API; ``import packeteer_trio`` never
imports it (nor httpx).
"""

from __future__ import annotations

try:
    import httpcore  # noqa: F401
    import httpx  # noqa: F401
except ImportError as _exc:  # pragma: no cover - tested in a subprocess
    # (underscored: a checker would list ``exc`` among the module's names)
    raise ImportError(
        f"packeteer_trio.http needs httpx, which is not installed ({_exc}); "
        "install the extra: pip install 'packeteer-trio[http]'",
        name=_exc.name,
    ) from _exc

from ._asgi import serve_asgi
from ._backend import URLBackend
from ._stream import NetworkStream
from ._transport import URLTransport, client

__all__ = ["NetworkStream", "URLBackend", "URLTransport", "client", "serve_asgi"]

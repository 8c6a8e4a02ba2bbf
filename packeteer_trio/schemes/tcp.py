"""tcp://, tcp4://, tcp6:// — TCP streams.

``tcp`` takes host names (resolved; happy eyeballs on connect) and, listening
on a name or on the wildcard (empty host), binds every address the name has,
as ``trio.open_tcp_listeners`` does. ``tcp4``/``tcp6`` fix the family.
"""

from __future__ import annotations

import errno
import socket
import sys

import packeteer_trio.schemes._inet as _inet
import packeteer_trio.schemes._sockopts as _sockopts

from .._accept import MAX_BACKLOG
from .._endpoints import StreamEndpoint
from .._errors import InvalidURL, with_url
from .._registry import Scheme, register
from .._url import URL
from ._listener import SocketListenerEndpoint


async def connect(url: URL) -> StreamEndpoint:
    if url.port is None or url.port == 0:
        raise InvalidURL(f"{url}: connect needs a port")
    addresses = await _inet.resolve(url, socket.SOCK_STREAM)
    sock = await _inet.happy_eyeballs(url, addresses, socket.SOCK_STREAM)
    try:
        _inet.configure_tcp(sock)
        family, address = sock.family, sock.getpeername()
    except BaseException:
        sock.close()
        raise
    return StreamEndpoint(url=_inet.url_for("tcp", family, address), sock=sock)


def _bind_all(
    url: URL, addresses: list[tuple[int, _inet.InetAddr]], backlog: int
) -> list[socket.socket]:
    """Bind and listen on every address; with port 0, give all the same port.

    A family this host lacks (EAFNOSUPPORT: IPv6 disabled, say) is skipped,
    as trio does, as long as another one works.
    """
    socks: list[socket.socket] = []
    unsupported: OSError | None = None
    port = url.port or 0
    reuseport = _sockopts.wants_reuseport(url)
    try:
        for family, sockaddr in addresses:
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:
                if exc.errno != errno.EAFNOSUPPORT:
                    raise
                unsupported = exc
                continue
            socks.append(sock)
            sock.setblocking(False)
            if sys.platform != "win32":
                # Rebind at once after a restart (TIME_WAIT). On Windows the
                # option means something else: it lets another socket bind
                # the same port while we listen (trio leaves it off there too;
                # Windows rebinds after TIME_WAIT by default).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuseport:
                _sockopts.set_reuseport(sock)
            if family == socket.AF_INET6:
                # One socket per family, as trio does: no v4-mapped surprises.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((sockaddr[0], port, *sockaddr[2:]))
            sock.listen(backlog)
            port = sock.getsockname()[1]
        if not socks:
            assert unsupported is not None
            raise OSError(
                errno.EAFNOSUPPORT,
                "this host supports none of the address families to "
                f"listen on ({unsupported.strerror})",
            )
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def listen(url: URL, backlog: int | None) -> SocketListenerEndpoint:
    addresses = await _inet.resolve(url, socket.SOCK_STREAM, passive=True)
    backlog = MAX_BACKLOG if backlog is None else min(backlog, MAX_BACKLOG)
    for attempt in range(10):
        try:
            socks = _bind_all(url, addresses, backlog)
            break
        except OSError as exc:
            # An ephemeral port free in one family may be taken in another.
            if exc.errno == errno.EADDRINUSE and not url.port and attempt < 9:
                continue
            raise with_url(exc, url, "listen") from exc
    first = socks[0]
    bound = _inet.url_for("tcp", first.family, first.getsockname())
    return SocketListenerEndpoint(socks, bound, configure=_inet.configure_tcp)


_inet_rules = _inet.make_validator("tcp")


def _validate(url: URL, text: str) -> URL:
    url = _inet_rules(url, text)
    _sockopts.check(url, text)  # ?reuseport=
    return url


register(Scheme("tcp", _validate, connect=connect, listen=listen))
register(Scheme("tcp4", _validate, connect=connect, listen=listen))
register(Scheme("tcp6", _validate, connect=connect, listen=listen))

"""``?reuseport=1``: several sockets, in one process or many, on one port.

With SO_REUSEPORT each worker process binds its own listening socket to the
same address and the kernel spreads new connections (TCP) or datagrams
(UDP, by the sender's address) over them: no shared accept queue, no
thundering herd. Linux and DragonFly balance with SO_REUSEPORT itself;
FreeBSD (12 and later) balances only with SO_REUSEPORT_LB, which is what we
ask for there. macOS, NetBSD and OpenBSD accept SO_REUSEPORT but do not
balance (the newest socket takes the load): share one listening socket
instead (``packeteer_trio.workers`` without ``?reuseport``). Windows has no
such option at all, and the URL is refused when parsed.

Only sockets of the same user can share a port this way (Linux checks the
effective uid), so another user cannot steal a listener's connections.
``connect``/``connect_datagram`` ignore the option: it is about binding.
"""

from __future__ import annotations

import socket
import sys

from .._errors import InvalidURL
from .._url import URL

# FreeBSD's SO_REUSEPORT_LB; the socket module may not name it.
_FREEBSD_REUSEPORT_LB = 0x00010000


def _option() -> int | None:
    if sys.platform.startswith("freebsd"):
        return getattr(socket, "SO_REUSEPORT_LB", _FREEBSD_REUSEPORT_LB)
    return getattr(socket, "SO_REUSEPORT", None)


REUSEPORT = _option()


def check(url: URL, text: str) -> None:
    """Parse-time rules: a boolean, and an OS that has the option."""
    value = url.query.get("reuseport")
    if value is None:
        return
    if value not in ("0", "1"):
        raise InvalidURL(f"{text!r}: reuseport={value!r} is not a boolean (1 or 0)")
    if value == "1" and REUSEPORT is None:
        raise InvalidURL(
            f"{text!r}: reuseport=1: this platform has no SO_REUSEPORT; to run "
            "several server processes, share one listening socket between them "
            "(packeteer_trio.workers without ?reuseport)"
        )


def wants_reuseport(url: URL) -> bool:
    return url.query.get("reuseport") == "1"


def set_reuseport(sock: socket.socket) -> None:
    """Before bind(); every socket sharing the port must have set it."""
    assert REUSEPORT is not None  # check() refused the URL otherwise
    sock.setsockopt(socket.SOL_SOCKET, REUSEPORT, 1)

"""``local://…?behaviour=seqpacket`` and ``?passcred=1``: their URL rules and
the socket options they mean.

SOCK_SEQPACKET over AF_UNIX is connection-oriented and keeps message
boundaries: Linux and the BSDs have it, macOS does not (its ``socket()``
answers EPROTONOSUPPORT), so there the URL is refused before anything is
opened, naming the alternatives. ``?passcred=1`` asks a datagram socket for
each sender's credentials (Linux ``SO_PASSCRED``); it is set before the
socket is bound, so that no datagram can arrive without them.
"""

from __future__ import annotations

import socket
import sys

from .._errors import InvalidURL, UnsupportedScheme
from .._url import URL

HAS_SEQPACKET = hasattr(socket, "SOCK_SEQPACKET") and sys.platform != "darwin"
HAS_PASSCRED = hasattr(socket, "SO_PASSCRED")
_SO_PASSCRED = getattr(socket, "SO_PASSCRED", -1)
NO_SEQPACKET = (
    "SOCK_SEQPACKET over AF_UNIX does not exist on this OS; use "
    "?behaviour=datagram (connect_datagram() gives a Channel[bytes] too) or a "
    "local:// stream with your own framing"
)
NO_PASSCRED = (
    "per-datagram credentials (SO_PASSCRED) exist only on Linux; "
    "peer_credentials() on a local:// stream works on macOS and the BSDs too"
)


def check(url: URL, text: str) -> None:
    """UnsupportedScheme / InvalidURL for seqpacket and passcred URLs."""
    if url.behaviour == "seqpacket":
        if not HAS_SEQPACKET:
            raise UnsupportedScheme(f"{text!r}: {NO_SEQPACKET}")
        if not url.path:
            raise InvalidURL(
                f"{text!r}: an unnamed local:// has no seqpacket form; give a "
                "path (local:///tmp/x.sock) or an abstract name (local:///%00name)"
            )
    passcred = url.query.get("passcred")
    if passcred is not None:
        if passcred not in ("0", "1"):
            raise InvalidURL(f"{text!r}: passcred={passcred!r} is not a boolean")
        if url.behaviour != "datagram":
            raise InvalidURL(
                f"{text!r}: passcred=1 applies to datagram sockets "
                "(?behaviour=datagram); a stream has peer_credentials()"
            )
        if passcred == "1" and not HAS_PASSCRED:
            raise UnsupportedScheme(f"{text!r}: {NO_PASSCRED}")


def stream_kind(url: URL) -> int:
    """The socket type of a local:// connect or listen."""
    if url.behaviour == "seqpacket":
        return socket.SOCK_SEQPACKET
    return socket.SOCK_STREAM


def passcred(url: URL, sock: socket.socket) -> None:
    """Set SO_PASSCRED on *sock* (before bind) if the URL asks for it."""
    if url.query.get("passcred") == "1":
        sock.setsockopt(socket.SOL_SOCKET, _SO_PASSCRED, 1)

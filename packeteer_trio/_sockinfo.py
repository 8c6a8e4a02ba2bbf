"""Face-neutral facts about sockets: addresses as URLs, peer credentials."""

from __future__ import annotations

import socket
import struct
import sys

from ._errors import PacketeerError
from ._url import URL, Query


def sockaddr_host(address: tuple[object, ...]) -> str:
    """The host of an inet sockaddr, with an IPv6 scope id as its zone
    (``fe80::1%eth0``): the socket module reports it apart, in the tuple."""
    host = str(address[0])
    scope = address[3] if len(address) == 4 else 0
    if not scope or "%" in host:
        return host
    assert isinstance(scope, int)
    try:
        return f"{host}%{socket.if_indextoname(scope)}"
    except OSError:  # the interface went away: its number still works
        return f"{host}%{scope}"


def url_from_sockaddr(family: int, kind: int, address: object) -> URL:
    """The URL of a socket address as returned by getsockname/getpeername/recvfrom."""
    datagram = kind == socket.SOCK_DGRAM
    if family in (socket.AF_INET, socket.AF_INET6):
        assert isinstance(address, tuple)
        host, port = sockaddr_host(address), address[1]
        digit = "4" if family == socket.AF_INET else "6"
        return URL(scheme=("udp" if datagram else "tcp") + digit, host=host, port=port)
    if family == getattr(socket, "AF_UNIX", None):
        if isinstance(address, bytes):  # Linux reports abstract names as bytes
            address = address.decode("utf-8", "surrogateescape")
        assert isinstance(address, str)
        query = Query({"behaviour": "datagram"}) if datagram else Query()
        # Paths already start with "/"; abstract names ("\0name") need one.
        if address and not address.startswith("/"):
            address = "/" + address
        return URL(scheme="local", path=address, query=query)
    raise PacketeerError(f"no URL form for address family {family}: {address!r}")


def socket_url(sock: socket.socket, *, peer: bool) -> URL:
    address = sock.getpeername() if peer else sock.getsockname()
    return url_from_sockaddr(sock.family, sock.type, address)


def peer_credentials(sock: socket.socket, url: URL) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a local socket."""
    if sock.family != getattr(socket, "AF_UNIX", None):
        raise PacketeerError(f"{url}: peer credentials exist only for local:// sockets")
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        pid, uid, gid = struct.unpack("3i", raw)
        return pid, uid, gid
    if sys.platform == "darwin" or "bsd" in sys.platform:  # pragma: no cover
        # struct xucred { u_int version; uid_t uid; short ngroups; gid_t groups[16]; }
        local_peercred, local_peerpid, sol_local = 0x001, 0x002, 0
        raw = sock.getsockopt(sol_local, local_peercred, 4 + 4 + 4 + 16 * 4)
        _, uid, _, gid = struct.unpack_from("IIhxxI", raw)
        pid = -1
        try:
            pid = struct.unpack("i", sock.getsockopt(sol_local, local_peerpid, 4))[0]
        except OSError:
            pass
        return pid, uid, gid
    raise PacketeerError(f"{url}: this OS does not report peer credentials")

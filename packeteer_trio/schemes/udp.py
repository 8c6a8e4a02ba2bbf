"""udp://, udp4://, udp6:// — UDP datagrams.

``open_datagram`` binds one socket: the first address the host resolves to
(a datagram socket has one address, unlike a TCP listener that may bind
several), or the wildcard when the host is empty; port 0 is ephemeral.
``connect_datagram`` connects to the first address of the peer (of the same
family as ``local`` when that is given). UDP has no handshake, so there is
nothing to race as happy eyeballs does for TCP: a dead peer shows up later as
ConnectionRefusedError from send/receive (ICMP port unreachable).

Destination URLs of ``send_to`` become sockaddrs here: IP literals at once
(the face caches them), host names through the resolver.
"""

from __future__ import annotations

import socket

import packeteer_trio.schemes._inet as _inet
import packeteer_trio.schemes._multicast as _multicast
import packeteer_trio.schemes._sockopts as _sockopts

from .._endpoints import DatagramEndpoint
from .._errors import InvalidURL, with_url
from .._registry import Scheme, register
from .._url import URL


def _check_udp(url: URL, role: str) -> None:
    if url.scheme not in _inet.UDP_SCHEMES:
        raise InvalidURL(f"{url}: {role} must be a udp://, udp4:// or udp6:// URL")


def _new_socket(url: URL, family: int, action: str) -> socket.socket:
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:  # EMFILE, ENOBUFS …: name the URL
        raise with_url(exc, url, action) from exc
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            # As for tcp: one family per socket, no v4-mapped surprises, and
            # senders' URLs then always match their sockets' URLs.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_datagram(url: URL) -> DatagramEndpoint:
    options = _multicast.parse(url, str(url))
    where = url
    if not url.host and options.family is not None:
        # The wildcard of the groups' family (udp://:5000?join=ff05::1).
        where = url.replace(host=_multicast.WILDCARD[options.family])
    family, sockaddr = (await _inet.resolve(where, socket.SOCK_DGRAM, passive=True))[0]
    sock = _new_socket(url, family, "bind")
    try:
        _multicast.before_bind(sock, url, options)  # its errors name the URL
        try:
            if _sockopts.wants_reuseport(url):
                _sockopts.set_reuseport(sock)
            sock.bind(sockaddr)
            bound = _inet.url_for("udp", family, sock.getsockname())
        except OSError as exc:
            raise with_url(exc, url, "bind") from exc
        _multicast.join(sock, url, options)
    except BaseException:
        sock.close()
        raise
    return DatagramEndpoint(sock, bound, *_inet.udp_addressing(bound, family))


async def connect_datagram(url: URL, local: URL | None) -> DatagramEndpoint:
    if not url.port:
        raise InvalidURL(f"{url}: connect_datagram needs a port")
    peers = await _inet.resolve(url, socket.SOCK_DGRAM)
    family, peer = peers[0]
    local_address: _inet.InetAddr | None = None
    if local is not None:
        _check_udp(local, "local=")
        mine = await _inet.resolve(local, socket.SOCK_DGRAM, passive=True)
        pairs = [(f, p, m) for f, p in peers for g, m in mine if f == g]
        if not pairs:
            raise InvalidURL(
                f"{url}: no address of the same IP family as local={local}"
            )
        family, peer, local_address = pairs[0]
    options = _multicast.parse(url, str(url))
    if options.groups:
        raise InvalidURL(
            f"{url}: join= is for open_datagram(): a connected socket gets "
            "datagrams from its peer only"
        )
    action = "connect"
    sock = _new_socket(url, family, action)
    try:
        _multicast.configure_sender(sock, url, options)
        if local_address is not None:
            action = f"bind to local={local}"
            sock.bind(local_address)
            action = "connect"
        sock.connect(peer)  # no handshake: never blocks
        peer_url = _inet.url_for("udp", family, sock.getpeername())
    except OSError as exc:
        sock.close()
        raise with_url(exc, url, action) from exc
    except BaseException:
        sock.close()
        raise
    return DatagramEndpoint(sock=sock, url=peer_url)


_inet_rules = _inet.make_validator("udp")


def _validate(url: URL, text: str) -> URL:
    url = _inet_rules(url, text)
    _sockopts.check(url, text)  # ?reuseport=
    return _multicast.check(url, text)  # ?join= ?iface= ?ttl= ?loop= ?broadcast=


for _name in ("udp", "udp4", "udp6"):
    register(
        Scheme(
            _name,
            _validate,
            open_datagram=open_datagram,
            connect_datagram=connect_datagram,
        )
    )

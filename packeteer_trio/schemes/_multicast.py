"""udp:// multicast and broadcast: ``?join=``, ``?iface=``, ``?ttl=``,
``?loop=`` and ``?broadcast=``.

- ``join=GROUP[,GROUP…]``: ``open_datagram`` joins each group (IPv4
  224.0.0.0/4 or IPv6 ff00::/8, all of the socket's family) after binding.
  Receivers of one group usually share its port, so such a socket also gets
  SO_REUSEADDR. ``connect_datagram`` refuses it: a connected socket takes
  datagrams from its peer only.
- ``iface=NAME|INDEX|ADDRESS``: the interface to join on and to send
  multicast from; an IPv4 socket also takes the interface's IPv4 address.
  IPv6 groups of interface- or link-local scope (ff01::/16, ff02::/16) mean
  nothing without one, so they need it.
- ``ttl=N`` (0-255): how many routers a multicast datagram may cross
  (IP_MULTICAST_TTL; the hop limit, IPV6_MULTICAST_HOPS, for IPv6); 0 keeps
  it on this host. The OS default is 1: the local network only.
- ``loop=0|1``: whether this host's own sockets that joined the group get
  what this socket sends to it (the OS default is 1).
- ``broadcast=1``: SO_BROADCAST, without which sending to (or connecting to)
  a broadcast address is refused with PermissionError. IPv4 only.

Everything is checked when the URL is parsed (except whether the interface
exists: interfaces come and go) and applied when the socket is opened.

On Linux every socket ``open_datagram`` makes has IP_MULTICAST_ALL (and
IPV6_MULTICAST_ALL) turned off: a socket then gets a group's datagrams only
if it joined the group itself, as on the BSDs, instead of whenever any
socket on the host joined it and the port matches.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import socket
import struct
import sys
from collections.abc import Mapping

from .._errors import InvalidURL, with_url
from .._url import URL
from . import _inet

KEYS = ("join", "iface", "ttl", "loop", "broadcast")
# Linux's numbers; the socket module may not name them.
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
IPV6_MULTICAST_ALL = getattr(socket, "IPV6_MULTICAST_ALL", 29)
# Where an IPv4 join or send interface can be given by index: Linux and
# FreeBSD take a struct ip_mreqn, Windows an index in 0.0.0.0/8. Elsewhere
# (macOS, NetBSD, OpenBSD) only by the interface's address.
_V4_BY_INDEX_MREQN = sys.platform.startswith(("linux", "freebsd"))
_V4_BY_INDEX = _V4_BY_INDEX_MREQN or sys.platform == "win32"
# Linux and Windows take an int for the IPv4 TTL and loop options; the BSDs
# and macOS want (or also take) a single byte.
_V4_BYTE_OPTIONS = not (sys.platform.startswith("linux") or sys.platform == "win32")
_ANY4 = bytes(4)
WILDCARD: dict[int, str] = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}


@dataclasses.dataclass(frozen=True)
class Options:
    """The multicast and broadcast options of one udp:// URL."""

    groups: tuple[str, ...] = ()  # canonical addresses, all one family
    iface: str | None = None
    ttl: int | None = None
    loop: bool | None = None
    broadcast: bool = False

    @property
    def family(self) -> int | None:
        """The groups' address family, None without groups."""
        return _inet.literal_family(self.groups[0]) if self.groups else None


_NONE = Options()


def parse(url: URL, text: str) -> Options:
    """The URL's options; InvalidURL naming *text* for any bad one."""
    query = url.query
    if not any(key in query for key in KEYS):
        return _NONE
    family = _socket_family(url)
    groups = _groups(query.get("join"), family, text)
    if groups:
        found = _inet.literal_family(groups[0])
        assert found is not None
        family = found
    iface = query.get("iface")
    if iface is not None:
        _check_iface(iface, family, text)
    for address in groups:
        scope = ipaddress.ip_address(address).packed[1] & 0x0F
        if ":" in address and scope in (1, 2) and iface is None:
            kind = "interface-local" if scope == 1 else "link-local"
            raise InvalidURL(
                f"{text!r}: join={address} is a {kind} group: say on which "
                "interface with iface=NAME"
            )
    broadcast = _boolean(query, "broadcast", text)
    if broadcast and family == socket.AF_INET6:
        raise InvalidURL(
            f"{text!r}: broadcast=1: IPv6 has no broadcast (use a multicast "
            "group such as ff02::1 with iface=)"
        )
    return Options(
        groups=groups,
        iface=iface,
        ttl=_ttl(query.get("ttl"), text),
        loop=_boolean(query, "loop", text),
        broadcast=bool(broadcast),
    )


def check(url: URL, text: str) -> URL:
    """Parse-time rules; the URL back with the groups spelled canonically."""
    options = parse(url, text)
    if not options.groups:
        return url
    query = dict(url.query)
    query["join"] = ",".join(options.groups)
    return url.replace(query=query)


def _socket_family(url: URL) -> int | None:
    """The family the socket will have, if the URL already says."""
    fixed = _inet.scheme_family(url.scheme)
    if fixed != socket.AF_UNSPEC:
        return fixed
    return _inet.literal_family(url.host) if url.host else None


def _groups(value: str | None, family: int | None, text: str) -> tuple[str, ...]:
    if value is None:
        return ()
    groups: list[str] = []
    for item in value.split(","):
        try:
            address = ipaddress.ip_address(item)
        except ValueError:
            address = None
        if address is None or not address.is_multicast or "%" in item:
            raise InvalidURL(
                f"{text!r}: join={value}: {item!r} is not a multicast group "
                "(IPv4 224.0.0.0/4 or IPv6 ff00::/8, without a zone: say the "
                "interface with iface=; several are separated by ',')"
            )
        found = socket.AF_INET if address.version == 4 else socket.AF_INET6
        if family is not None and found != family:
            raise InvalidURL(
                f"{text!r}: join={item} is an IPv{address.version} group but the "
                f"socket is IPv{_inet.FAMILY_DIGIT[family]}: the groups and the "
                "socket's address must be of one family"
            )
        family = found
        if str(address) not in groups:
            groups.append(str(address))
    return tuple(groups)


def _check_iface(iface: str, family: int | None, text: str) -> None:
    if not iface or not iface.isprintable() or len(iface) > 255:
        raise InvalidURL(f"{text!r}: iface={iface!r} is not an interface name")
    found = _inet.literal_family(iface)
    if found == socket.AF_INET6:
        raise InvalidURL(
            f"{text!r}: iface={iface}: an interface is named by its name, its "
            "index or (IPv4 only) its IPv4 address"
        )
    if found == socket.AF_INET and family == socket.AF_INET6:
        raise InvalidURL(
            f"{text!r}: iface={iface} is an IPv4 address: name the interface of "
            "an IPv6 socket by name or index"
        )
    if found is None and family == socket.AF_INET and not _V4_BY_INDEX:
        raise InvalidURL(
            f"{text!r}: iface={iface}: on {sys.platform} an IPv4 socket names "
            "its multicast interface by the interface's IPv4 address "
            "(iface=192.0.2.10)"
        )


def _boolean(query: Mapping[str, str], key: str, text: str) -> bool | None:
    value = query.get(key)
    if value is None:
        return None
    if value not in ("0", "1"):
        raise InvalidURL(f"{text!r}: {key}={value!r} is not a boolean (1 or 0)")
    return value == "1"


def _ttl(value: str | None, text: str) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 3:
        raise InvalidURL(f"{text!r}: ttl={value!r} is not a number 0-255")
    ttl = int(value)
    if ttl > 255:
        raise InvalidURL(f"{text!r}: ttl={ttl} is out of range 0-255")
    return ttl


# -- applying them to a socket --------------------------------------------------


def isolate(sock: socket.socket, url: URL) -> None:
    """Linux: only the groups this socket joined reach it (see the docstring)."""
    if not sys.platform.startswith("linux"):
        return
    level, option = (
        (socket.IPPROTO_IP, IP_MULTICAST_ALL)
        if sock.family == socket.AF_INET
        else (socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL)
    )
    try:
        sock.setsockopt(level, option, 0)
    except OSError as exc:  # IPV6_MULTICAST_ALL is new in Linux 4.20
        if exc.errno != errno.ENOPROTOOPT:
            raise with_url(exc, url, "IP_MULTICAST_ALL") from exc


def before_bind(sock: socket.socket, url: URL, options: Options) -> None:
    """What ``open_datagram`` sets before bind(): group isolation (Linux),
    port sharing for group receivers, then what ``connect_datagram`` sets."""
    isolate(sock, url)
    if options.groups:
        _set(sock, url, "share the port", socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    configure_sender(sock, url, options)


def configure_sender(sock: socket.socket, url: URL, options: Options) -> None:
    """Broadcast permission, TTL, loop and the sending interface."""
    if options is _NONE:
        return
    v4 = sock.family == socket.AF_INET
    if options.groups and options.family != sock.family:
        # udp://NAME: the family was known only once the name was resolved.
        raise InvalidURL(
            f"{url}: join={options.groups[0]} is not of the socket's family "
            f"(IPv{_inet.FAMILY_DIGIT[sock.family]}); write the host as an "
            "address of the groups' family"
        )
    if options.broadcast:
        if not v4:
            raise InvalidURL(f"{url}: broadcast=1: IPv6 has no broadcast")
        _set(sock, url, "broadcast=1", socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    ip = socket.IPPROTO_IP if v4 else socket.IPPROTO_IPV6
    if options.ttl is not None:
        option = socket.IP_MULTICAST_TTL if v4 else socket.IPV6_MULTICAST_HOPS
        _set(sock, url, f"ttl={options.ttl}", ip, option, _small(options.ttl, v4))
    if options.loop is not None:
        option = socket.IP_MULTICAST_LOOP if v4 else socket.IPV6_MULTICAST_LOOP
        _set(sock, url, "loop=", ip, option, _small(int(options.loop), v4))
    if options.iface is not None:
        iface = options.iface
        if v4:
            tail = _v4_interface(url, iface)
            # An index goes as a whole struct ip_mreqn (its group unused).
            value: int | bytes = _ANY4 + tail if len(tail) > 4 else tail
            _set(sock, url, f"iface={iface}", ip, socket.IP_MULTICAST_IF, value)
        else:
            index = interface_index(url, iface)
            _set(sock, url, f"iface={iface}", ip, socket.IPV6_MULTICAST_IF, index)


def join(sock: socket.socket, url: URL, options: Options) -> None:
    """After bind(): join every group, on the interface if one was named."""
    for group in options.groups:
        if sock.family == socket.AF_INET:
            request = socket.inet_aton(group) + (
                _v4_interface(url, options.iface) if options.iface else _ANY4
            )
            level, option = socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP
        else:
            index = interface_index(url, options.iface) if options.iface else 0
            request = socket.inet_pton(socket.AF_INET6, group) + struct.pack("I", index)
            level, option = socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP
        _set(sock, url, f"join {group}", level, option, request)


def interface_index(url: URL, iface: str) -> int:
    """The index of interface *iface* (a name or a number); ENODEV if none."""
    if iface.isascii() and iface.isdigit():
        return int(iface)
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        pass
    # URLs lower-case their query values, interface names keep their case:
    # take the one interface whose name matches but for case.
    matches = [index for index, name in socket.if_nameindex() if name.lower() == iface]
    if len(matches) == 1:
        return matches[0]
    error = OSError(errno.ENODEV, f"no network interface {iface!r} (iface=)")
    raise with_url(error, url, "finding the multicast interface")


def _v4_interface(url: URL, iface: str) -> bytes:
    """The IPv4 interface as the tail of IP_ADD_MEMBERSHIP's request (after
    the group): its address, or its index as the platform takes one."""
    if _inet.literal_family(iface) == socket.AF_INET:
        return socket.inet_aton(iface)
    index = interface_index(url, iface)
    if _V4_BY_INDEX_MREQN:  # struct ip_mreqn's imr_address and imr_ifindex
        return _ANY4 + struct.pack("i", index)
    return struct.pack("!I", index)  # Windows: the index as 0.0.0.0/8


def _small(value: int, v4: bool) -> int | bytes:
    return bytes([value]) if v4 and _V4_BYTE_OPTIONS else value


def _set(
    sock: socket.socket,
    url: URL,
    what: str,
    level: int,
    option: int,
    value: int | bytes,
) -> None:
    try:
        sock.setsockopt(level, option, value)
    except OSError as exc:
        raise with_url(exc, url, what) from exc

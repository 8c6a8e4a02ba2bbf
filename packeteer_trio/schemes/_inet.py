"""What the IP schemes share (tcp, udp, and fd:// over inherited IP sockets):
host rules per family, resolution, connecting, the options of a TCP stream,
and turning destination URLs into UDP addresses.

Resolution and connecting wait through anyio, so the same code serves the
trio face and the anyio face (under trio, anyio's waits are trio's own).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import sys
from collections.abc import Callable
from typing import Any

import anyio

from .. import _selector_thread
from .._endpoints import Lookup, Resolve, SendToPeer, SockAddr
from .._errors import InvalidURL, with_url
from .._sockinfo import sockaddr_host
from .._url import URL

# An IP socket address: (host, port) or (host, port, flowinfo, scope_id).
InetAddr = tuple[Any, ...]
_HOSTNAME_RE = re.compile(r"[\w.-]+\Z")
# A name whose last label is a number (or 0x…) is no DNS name (RFC 3696 §2:
# no all-numeric top-level domain) but what resolvers take for an IPv4
# literal in some spelling (256.0.0.1, 127.1, 0x7f.1, 2130706433): only the
# plain dotted quad is accepted, the rest would mean different things to
# different resolvers.
_NUMERIC_LAST_LABEL_RE = re.compile(r"(?:.*\.)?(?:[0-9]+|0x[0-9a-f]*)\.?\Z")
FAMILY_DIGIT: dict[int, str] = {socket.AF_INET: "4", socket.AF_INET6: "6"}


def literal_family(host: str) -> int | None:
    """AF_INET or AF_INET6 for an IP literal, None for a host name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def scheme_family(scheme: str) -> int:
    """AF_UNSPEC for tcp/udp, the fixed family for tcp4/udp6 etc."""
    if scheme.endswith("4"):
        return socket.AF_INET
    if scheme.endswith("6"):
        return socket.AF_INET6
    return socket.AF_UNSPEC


def make_validator(base: str) -> Callable[[URL, str], URL]:
    """URL rules for one inet scheme family ("tcp" or "udp")."""

    def validate(url: URL, text: str) -> URL:
        if url.path not in ("", "/"):
            raise InvalidURL(f"{text!r}: {url.scheme}:// takes no path")
        host = url.host
        wanted = scheme_family(url.scheme)
        found = literal_family(host) if host else None
        if found is not None:
            if wanted not in (socket.AF_UNSPEC, found):
                raise InvalidURL(
                    f"{text!r}: {url.scheme}:// cannot take an IPv"
                    f"{FAMILY_DIGIT[found]} address ({host}); use "
                    f"{base}{FAMILY_DIGIT[found]}:// or {base}://"
                )
            host = str(ipaddress.ip_address(host))  # canonical spelling
        elif ":" in host:
            raise InvalidURL(
                f"{text!r}: [{host}] is not an IPv6 address (with an optional "
                "zone such as %25eth0 after it)"
            )
        elif _NUMERIC_LAST_LABEL_RE.match(host):
            raise InvalidURL(
                f"{text!r}: {host!r} is not a valid IPv4 address (four numbers "
                "0-255 without leading zeros, as 192.0.2.1) nor a host name"
            )
        elif host and not _HOSTNAME_RE.match(host):
            raise InvalidURL(
                f"{text!r}: {host!r} is neither an IP address nor a host name"
            )
        return url.replace(host=host, path="")

    return validate


async def resolve(
    url: URL, kind: int, *, passive: bool = False
) -> list[tuple[int, InetAddr]]:
    """``(family, sockaddr)`` pairs for the URL's host and port, in order."""
    port = url.port or 0
    family = scheme_family(url.scheme)
    host = url.host
    if host and (found := literal_family(host)) is not None:
        return [(found, literal_sockaddr(url, found, host, port))]
    if not host and not passive:
        raise InvalidURL(f"{url}: a host is needed to connect")
    try:
        infos = await anyio.getaddrinfo(
            host or None,
            port,
            family=family,
            type=kind,
            flags=socket.AI_PASSIVE if passive else 0,
        )
    except OSError as exc:
        raise with_url(exc, url, "resolving the host") from exc
    seen: list[tuple[int, InetAddr]] = []
    for info in infos:
        pair = (int(info[0]), tuple(info[4]))
        if pair[0] in FAMILY_DIGIT and pair not in seen:
            seen.append(pair)
    if not seen:
        raise with_url(
            OSError(errno.EADDRNOTAVAIL, "no usable address"), url, "resolve"
        )
    return seen


def literal_sockaddr(url: URL, family: int, host: str, port: int) -> InetAddr:
    """The sockaddr of an IP literal; an IPv6 zone (``fe80::1%eth0``, or a
    number) becomes the scope id, which the kernel needs for link-local
    addresses (the socket module ignores a zone in the host string)."""
    if family != socket.AF_INET6:
        return (host, port)
    address, _, zone = host.partition("%")
    if not zone:
        return (host, port, 0, 0)
    if zone.isascii() and zone.isdigit():
        return (address, port, 0, int(zone))
    try:
        return (address, port, 0, socket.if_nametoindex(zone))
    except OSError as exc:
        error = OSError(errno.ENODEV, f"no network interface {zone!r} (the zone)")
        raise with_url(error, url, "resolving the IPv6 zone") from exc


def interleave(addresses: list[tuple[int, InetAddr]]) -> list[tuple[int, InetAddr]]:
    """Alternate families, starting with the first one (RFC 8305 §4)."""
    first = addresses[0][0]
    same = [a for a in addresses if a[0] == first]
    other = [a for a in addresses if a[0] != first]
    result = []
    while same or other:
        if same:
            result.append(same.pop(0))
        if other:
            result.append(other.pop(0))
    return result


def url_for(scheme_base: str, family: int, sockaddr: InetAddr) -> URL:
    host = sockaddr_host(sockaddr)
    port = sockaddr[1]
    assert isinstance(port, int)
    return URL(scheme=scheme_base + FAMILY_DIGIT[family], host=host, port=port)


# Consecutive EINTRs from connect() after which we give up: one means a
# signal landed, a storm of them means something is badly wrong.
MAX_INTERRUPTS = 16


async def connect_socket(sock: socket.socket, sockaddr: InetAddr) -> None:
    """Non-blocking connect: start it, wait for writability, read SO_ERROR.

    An interrupted connect() (EINTR) is waited for like EINPROGRESS: POSIX
    says the connection goes on asynchronously. Whether it really started
    (a signal may land before it did) only connect() can tell, so after the
    wait we ask it again: EISCONN means done, EALREADY still going, and
    EINPROGRESS that it starts only now. EAGAIN is no "in progress" here:
    Linux says so when it has no free local port, and nothing was started.
    """
    sock.setblocking(False)
    interrupted = 0
    while True:
        try:
            sock.connect(sockaddr)
            return
        except InterruptedError:
            interrupted += 1
            if interrupted > MAX_INTERRUPTS:
                raise
        except BlockingIOError as exc:
            if exc.errno == errno.EAGAIN:
                raise OSError(
                    errno.EAGAIN, f"{exc.strerror} (no connection was started)"
                ) from None
        except OSError as exc:
            if interrupted and exc.errno == errno.EISCONN:
                return  # the interrupted attempt completed meanwhile
            raise
        if _selector_thread.needed():  # asyncio without add_reader (Windows)
            await _selector_thread.wait_writable(sock.fileno())
        else:
            await anyio.wait_writable(sock)
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
        if not interrupted:
            return


async def happy_eyeballs(
    url: URL,
    addresses: list[tuple[int, InetAddr]],
    kind: int,
    *,
    delay: float = 0.25,
) -> socket.socket:
    """Connect to the first address that answers (RFC 8305 "happy eyeballs").

    Attempts start *delay* seconds apart, or at once when the previous one
    failed; the first success cancels the rest. Every socket that does not
    win is closed, also when we are cancelled.
    """
    addresses = interleave(addresses)
    winner: socket.socket | None = None
    errors: list[OSError] = []

    async def attempt(index: int, previous_failed: anyio.Event | None) -> None:
        nonlocal winner
        if previous_failed is not None:
            with anyio.move_on_after(delay * index):
                await previous_failed.wait()
        family, sockaddr = addresses[index]
        failed = events[index]
        try:
            sock = socket.socket(family, kind)
        except OSError as exc:  # EMFILE, ENOBUFS …: this attempt failed
            errors.append(exc)
            failed.set()
            return
        try:
            await connect_socket(sock, sockaddr)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            failed.set()
            return
        except BaseException:
            sock.close()
            raise
        if winner is None:
            winner = sock
            group.cancel_scope.cancel()
        else:
            sock.close()

    events = [anyio.Event() for _ in addresses]
    try:
        async with anyio.create_task_group() as group:
            for index in range(len(addresses)):
                group.start_soon(attempt, index, events[index - 1] if index else None)
    except BaseException:
        if winner is not None:
            winner.close()
        raise
    if winner is None:
        # Report the first failure's class so ConnectionRefusedError stays one.
        first = errors[0]
        if len(errors) > 1:
            tried = ", ".join(_host_port(address) for _, address in addresses)
            first = type(first)(first.errno, f"{first.strerror} (tried {tried})")
        raise with_url(first, url, "connect") from errors[0]
    return winner


def _host_port(sockaddr: InetAddr) -> str:
    host = str(sockaddr[0])
    return f"[{host}]:{sockaddr[1]}" if ":" in host else f"{host}:{sockaddr[1]}"


# -- TCP stream options ---------------------------------------------------------

# Linux's value; Python only names the constant since 3.12 on some builds.
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)


def configure_tcp(sock: socket.socket) -> None:
    """The options of every TCP stream we make or accept (as trio's)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if sys.platform.startswith("linux") or sys.platform == "darwin":
        # As trio's SocketStream: keep at most 16 KiB queued but unsent, so
        # a full socket means "the peer is slow", not "the kernel hoards".
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, 2**14)
        except OSError:
            pass


# -- UDP destinations -------------------------------------------------------------

UDP_SCHEMES = frozenset({"udp", "udp4", "udp6"})


def udp_addressing(own: URL, family: int) -> tuple[Lookup, Resolve]:
    """The ``lookup``/``resolve`` pair of a UDP socket of *family* at *own*:
    IP literals at once (the face caches them), host names through the
    resolver."""
    digit = FAMILY_DIGIT[family]

    def lookup(dest: URL) -> SockAddr | SendToPeer | None:
        if dest.scheme not in UDP_SCHEMES:
            raise InvalidURL(
                f"{own}: cannot send to {dest}: not a udp://, udp4:// or udp6:// URL"
            )
        if not dest.host or not dest.port:
            raise InvalidURL(
                f"{own}: cannot send to {dest}: a host and port are needed"
            )
        found = literal_family(dest.host)
        if found is None:
            return None  # a host name: resolve() it
        if found != family:
            raise InvalidURL(
                f"{own}: cannot send to {dest}: an IPv{FAMILY_DIGIT[found]} "
                f"address from an IPv{digit} socket; open the socket with "
                f"udp{FAMILY_DIGIT[found]}://"
            )
        return literal_sockaddr(dest, family, dest.host, dest.port)

    async def resolve_dest(dest: URL) -> SockAddr | SendToPeer:
        found = lookup(dest)  # same checks as for literals
        if found is not None:
            return found
        for got, sockaddr in await resolve(dest, socket.SOCK_DGRAM):
            if got == family:
                return sockaddr
        raise with_url(
            OSError(errno.EADDRNOTAVAIL, f"the host has no IPv{digit} address"),
            dest,
            f"send_to from {own}",
        )

    return lookup, resolve_dest

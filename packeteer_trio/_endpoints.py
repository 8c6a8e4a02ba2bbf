"""Raw endpoints: what a scheme hands to a face.

A scheme module knows its OS calls (socket, bind, mkfifo, …) and builds these
(the open pipeline, :mod:`._open`, passes them on); a face (trio in
:mod:`._trio`, anyio in :mod:`._anyio`) wraps them in its own classes and
decides how to wait. These are the types both sides agree on: plain data,
and the one interface a listener implements. Nothing here blocks: waiting is
injected by the face.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import socket
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from ._errors import InvalidURL, PacketeerError
from ._url import URL

WaitFd = Callable[[int], Awaitable[None]]

# A socket address as the socket module takes and reports it: a (host, port[,
# flow, scope]) tuple for IP, a str (or Linux's bytes) for AF_UNIX. Each
# scheme makes its own; :mod:`.schemes._inet` names its tuples InetAddr.
SockAddr = tuple[Any, ...] | str | bytes


@dataclasses.dataclass(eq=False)
class StreamEndpoint:
    """One end of a byte stream: a connected socket, or one or two pipe fds.

    The face that wraps it owns the descriptors from then on. ``on_close``
    runs once when the face closes it (a FIFO listener uses that to start the
    next session). ``eof_needs_hangup`` marks a FIFO reader, where ``read()``
    returning 0 may only mean "no writer has come yet".
    ``read_handle``/``write_handle`` are Windows pipe HANDLEs instead of fds
    (the same one twice for a duplex ``pipe://``), already associated with
    trio's completion port; only the trio face can wrap them.
    """

    url: URL
    sock: socket.socket | None = None
    read_fd: int | None = None
    write_fd: int | None = None
    eof_needs_hangup: bool = False
    on_close: Callable[[], None] | None = None
    read_handle: int | None = None
    write_handle: int | None = None

    def close(self) -> None:
        """Close what is still open (for when no face took ownership)."""
        if self.sock is not None:
            self.sock.close()
        for fd in {self.read_fd, self.write_fd} - {None}:
            assert fd is not None
            os.close(fd)
        if sys.platform == "win32":  # pragma: no cover
            import _winapi

            for handle in {self.read_handle, self.write_handle} - {None}:
                assert handle is not None
                _winapi.CloseHandle(handle)
        if self.on_close is not None:
            self.on_close()


class ListenerEndpoint(ABC):
    """Something that produces StreamEndpoints: accepting sockets, or a FIFO."""

    url: URL

    @abstractmethod
    def fds(self) -> list[int]:
        """Descriptors a face must ``notify_closing`` before :meth:`close`."""

    def sockets(self) -> list[socket.socket]:
        """The listening sockets, if it has any (a FIFO has none)."""
        return []

    @abstractmethod
    def try_accept(self) -> StreamEndpoint | None:
        """Accept one connection without blocking; None if none is waiting."""

    @abstractmethod
    async def wait_acceptable(self, wait_readable: WaitFd) -> None:
        """Wait until :meth:`try_accept` may succeed, using the face's waiter."""

    def detach(self) -> list[socket.socket]:
        """Give up the listening sockets without closing them: the caller's now.

        :meth:`close` then closes no descriptor. PacketeerError (and nothing
        changes) for a listener without sockets.
        """
        raise PacketeerError(
            f"{self.url}: this listener has no socket to hand over (only socket "
            "listeners can be detached)"
        )

    @abstractmethod
    def close(self) -> None:
        """Release every resource (and any file on disk the listener owns)."""


class SendToPeer(enum.Enum):
    """The sockaddr meaning "the other end of this unnamed pair": send() there.

    A one-member enum, so that ``target is PEER`` narrows the type.
    """

    PEER = "the pair's own peer"

    def __repr__(self) -> str:
        return "<the pair's own peer>"


PEER = SendToPeer.PEER
# A destination URL -> its sockaddr (PEER on an unnamed pair), or None when a
# host name must be resolved first; the resolving step, never cached.
Lookup = Callable[[URL], SockAddr | SendToPeer | None]
Resolve = Callable[[URL], Awaitable[SockAddr | SendToPeer]]


def _no_lookup(url: URL) -> SockAddr | SendToPeer | None:
    raise InvalidURL(f"{url}: this socket is connected and cannot send elsewhere")


async def _no_resolve(url: URL) -> SockAddr | SendToPeer:
    raise InvalidURL(f"{url}: this socket is connected and cannot send elsewhere")


@dataclasses.dataclass(eq=False)
class DatagramEndpoint:
    """A datagram socket: bound (``open_datagram``) or connected.

    ``url`` is the bound address for an unconnected socket and the peer for a
    connected one, narrowed (``udp://localhost:0`` → ``udp4://127.0.0.1:40123``).
    The scheme knows how its URLs become addresses, so it supplies both steps:
    ``lookup(url)`` turns a destination URL into a sockaddr without waiting
    (the face caches it), or returns None when a host name needs resolving by
    ``await resolve(url)`` (never cached: DNS answers expire). Both raise
    InvalidURL for a destination this socket cannot reach. An unnamed
    ``local://`` pair receives on ``sock`` and sends through ``send_sock``;
    its lookup answers :data:`PEER`. ``on_close`` removes a bound socket file.
    """

    sock: socket.socket
    url: URL
    lookup: Lookup = _no_lookup
    resolve: Resolve = _no_resolve
    send_sock: socket.socket | None = None
    on_close: Callable[[], None] | None = None

    def close(self) -> None:
        """Close what is still open (for when no face took ownership)."""
        self.sock.close()
        if self.send_sock is not None:
            self.send_sock.close()
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            on_close()


@dataclasses.dataclass(eq=False)
class PacketEndpoint:
    """A descriptor that moves whole packets by read()/write(): a tun/tap device.

    Not a socket, so no sockaddrs and no recv flags: one ``read()`` is one
    packet, one ``write()`` sends one. ``url`` names what was opened, with
    anything the kernel chose filled in (``tun://`` → ``tun:///tun0``). The
    descriptor is non-blocking; the face that wraps it owns it from then on.
    """

    fd: int
    url: URL

    def close(self) -> None:
        """Close the fd (for when no face took ownership)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

"""Raw endpoints: what a scheme hands to a face.

A scheme module knows its OS calls (socket, bind, mkfifo, …) and builds these;
a face (trio in :mod:`._stream`, anyio in :mod:`.anyio_compat`) wraps them in
its own stream and listener classes and decides how to wait. Nothing here
blocks: waiting is injected by the face.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import socket
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ._errors import InvalidURL, with_url
from ._url import URL

WaitFd = Callable[[int], Awaitable[None]]

# accept() errors that concern only the one connection being accepted: like
# trio's SocketListener (its list, _highlevel_socket.py) we drop that
# connection and keep listening. Socket listeners skip them in try_accept;
# serve() (both faces) skips them from any listener, a user scheme's too.
IGNORABLE_ACCEPT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in [
        "EPERM",  # Linux: the firewall refused the connection
        "ECONNABORTED",  # BSDs: reset before we accepted
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    ]
    if hasattr(errno, name)
)


# accept() errors that mean "the system is out of something for now" (as in
# trio.serve_listeners): serving pauses and retries instead of ending.
ACCEPT_CAPACITY_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
ACCEPT_RETRY_PAUSE = 0.100
LOGGER = logging.getLogger("packeteer_trio")

# Linux and the BSDs keep the listen backlog in 16 bits (and Python's listen()
# takes a C int): like trio, a larger one is capped here and the kernel caps
# it further to its own limit (net.core.somaxconn).
MAX_BACKLOG = 0xFFFF


def capped_backlog(backlog: int | None) -> int | None:
    """*backlog* capped at :data:`MAX_BACKLOG`; None stays "the default"."""
    if backlog is None:
        return None
    if not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int or None, not {backlog!r}")
    return min(backlog, MAX_BACKLOG)


class AcceptBurst:
    """Consecutive accept failures for lack of resources, shared by the
    listeners of one serve() (either face): the first is logged, the rest are
    counted, and the recovery is logged once."""

    __slots__ = ("failures", "started")

    def __init__(self) -> None:
        self.failures = 0
        self.started = 0.0

    def failed(self, url: URL, exc: OSError) -> None:
        if not self.failures:
            self.started = time.monotonic()
            code = exc.errno or 0
            LOGGER.error(
                "%s: accept failed with %s (%s); pausing and retrying every "
                "%d ms, logged once until accepting works again",
                url,
                errno.errorcode.get(code, code),
                os.strerror(code),
                ACCEPT_RETRY_PAUSE * 1000,
                exc_info=exc,
            )
        self.failures += 1

    def succeeded(self, url: URL) -> None:
        if self.failures:
            LOGGER.info(
                "%s: accepting again after %d failed attempts in %.1f s",
                url,
                self.failures,
                time.monotonic() - self.started,
            )
            self.failures = 0


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
            from ._win32 import close_handle

            for handle in {self.read_handle, self.write_handle} - {None}:
                assert handle is not None
                close_handle(handle)
        if self.on_close is not None:
            self.on_close()


class ListenerEndpoint(ABC):
    """Something that produces StreamEndpoints: accepting sockets, or a FIFO."""

    url: URL

    @abstractmethod
    def fds(self) -> list[int]:
        """Descriptors a face must ``notify_closing`` before :meth:`close`."""

    @abstractmethod
    def try_accept(self) -> StreamEndpoint | None:
        """Accept one connection without blocking; None if none is waiting."""

    @abstractmethod
    async def wait_acceptable(self, wait_readable: WaitFd) -> None:
        """Wait until :meth:`try_accept` may succeed, using the face's waiter."""

    @abstractmethod
    def close(self) -> None:
        """Release every resource (and any file on disk the listener owns)."""


class SocketListenerEndpoint(ListenerEndpoint):
    """One or more listening sockets (several for a name with many families).

    ``make_url(sockaddr)`` turns an accepted socket's local address into the
    stream's URL; ``configure`` sets per-connection options (TCP_NODELAY).
    """

    def __init__(
        self,
        socks: list[socket.socket],
        url: URL,
        *,
        configure: Callable[[socket.socket], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.socks = socks
        self.url = url
        self._configure = configure
        self._on_close = on_close
        self._next = 0

    def fds(self) -> list[int]:
        return [sock.fileno() for sock in self.socks if sock.fileno() >= 0]

    def try_accept(self) -> StreamEndpoint | None:
        count = len(self.socks)
        for offset in range(count):
            # Start after the socket that served last time, so one busy family
            # cannot starve the others.
            sock = self.socks[(self._next + offset) % count]
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in IGNORABLE_ACCEPT_ERRNOS:
                    continue
                raise with_url(exc, self.url, "accept") from exc
            self._next = (self._next + offset + 1) % count
            try:
                conn.setblocking(False)
                if self._configure is not None:
                    self._configure(conn)
            except BaseException:
                conn.close()
                raise
            return StreamEndpoint(url=self.url, sock=conn)
        return None

    async def wait_acceptable(self, wait_readable: WaitFd) -> None:
        fds = self.fds()
        if len(fds) == 1:
            await wait_readable(fds[0])
            return
        if not fds:
            await wait_readable(-1)  # let the face raise its "closed" error
        failures: list[BaseException] = []

        async with anyio.create_task_group() as group:

            async def wait_one(fd: int) -> None:
                try:
                    await wait_readable(fd)
                except Exception as exc:
                    failures.append(exc)
                group.cancel_scope.cancel()

            for fd in fds:
                group.start_soon(wait_one, fd)
        if failures:
            raise failures[0]

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


# Address as the socket module takes it: a (host, port[, flow, scope]) tuple or
# an AF_UNIX str. Kept loose on purpose: each scheme makes its own.
SockAddr = Any


class SendToPeer:
    """The sockaddr meaning "the other end of this unnamed pair": send() there."""

    def __repr__(self) -> str:
        return "<the pair's own peer>"


PEER = SendToPeer()


def _no_lookup(url: URL) -> SockAddr:
    raise InvalidURL(f"{url}: this socket is connected and cannot send elsewhere")


async def _no_resolve(url: URL) -> SockAddr:
    return _no_lookup(url)


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
    lookup: Callable[[URL], SockAddr | None] = _no_lookup
    resolve: Callable[[URL], Awaitable[SockAddr]] = _no_resolve
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

"""The anyio face of datagrams: unreliable object streams over datagram sockets.

:class:`DatagramSocket` (bound, from ``open_datagram``) carries
``(bytes, URL)`` items, :class:`DatagramChannel` (from ``connect_datagram``)
carries ``bytes``. The loops are lean on every backend, like the trio face's
:mod:`.._datagram`, and keep its rules: the checkpoint sandwich (cancellation
never arrives after a datagram left or was taken from the kernel), a datagram
that does not fit ``max_size`` is reported and never silently cut, and
destination URLs become sockaddrs through the scheme's ``lookup``/``resolve``,
cached per socket. anyio's own datagram sockets would not do: they carry
``(host, port)`` tuples, cut AF_UNIX datagrams at 64 KiB and, on asyncio,
drop datagrams beyond a queue of 100.

Errors are what the trio face raises, with trio's resource errors replaced by
anyio's: ``ClosedResourceError`` and ``BusyResourceError`` for misuse;
``ConnectionRefusedError`` when ICMP says nobody listens at the peer (the
socket stays usable); ``OSError(EMSGSIZE)`` for a datagram too big to send
or to receive; other ``OSError``\\s naming the URL.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from .._datagram import (
    _TRUNC,
    DEFAULT_MAX_SIZE,
    _check_size,
    _grow_buffer,
    _local,
)
from .._endpoints import PEER, DatagramEndpoint, SockAddr
from .._errors import with_url
from .._io import ConflictDetector
from .._sockinfo import url_from_sockaddr
from .._url import URL
from ._backend import current_backend, socket_attributes

Data = bytes | bytearray | memoryview
_CACHE_LIMIT = 1024

__all__ = ["DEFAULT_MAX_SIZE", "DatagramChannel", "DatagramSocket"]


class _DatagramBase:
    """Ownership, closing, waiting and errors shared by both classes."""

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        self._url = endpoint.url
        self._sock = endpoint.sock
        self._send_sock = endpoint.send_sock or endpoint.sock
        self._fd = self._sock.fileno()
        self._send_fd = self._send_sock.fileno()
        self._on_close = endpoint.on_close
        self._closed = False
        self._send_conflict = ConflictDetector("sending to", anyio.BusyResourceError)
        self._receive_conflict = ConflictDetector(
            "receiving from", anyio.BusyResourceError
        )
        backend = current_backend()
        self._checkpoint = backend.checkpoint
        self._checkpoint_if_cancelled = backend.checkpoint_if_cancelled
        self._cancel_shielded_checkpoint = backend.cancel_shielded_checkpoint
        self._wait_readable = backend.wait_readable
        self._wait_writable = backend.wait_writable
        self._notify_closing = backend.notify_closing

    @property
    def url(self) -> URL:
        """Bound address (DatagramSocket) or peer (DatagramChannel), as a URL."""
        return self._url

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return socket_attributes(self._sock, self._url)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            for sock in {self._sock, self._send_sock}:
                self._notify_closing(sock.fileno())
                sock.close()
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close()
        await self._checkpoint()

    def _closed_error(self) -> anyio.ClosedResourceError:
        return anyio.ClosedResourceError(
            f"{self._url}: this datagram socket was closed"
        )

    def _error(self, exc: OSError, action: str, data: Data | None = None) -> Exception:
        if self._closed or exc.errno == errno.EBADF:
            return self._closed_error()
        if exc.errno == errno.EMSGSIZE and data is not None:
            size = memoryview(data).nbytes
            return OSError(
                errno.EMSGSIZE,
                f"{self._url}: {action} failed: the datagram is {size} bytes, "
                "too long for one datagram on this socket",
            )
        if exc.errno == errno.ECONNREFUSED:
            return ConnectionRefusedError(
                errno.ECONNREFUSED,
                f"{self._url}: {action} failed: connection refused (nothing is "
                "receiving at the peer's address; the socket stays usable)",
            )
        return with_url(exc, self._url, action)

    def _truncated(self, real: int, size: int, sender: object) -> OSError:
        told = f"{real}-byte" if _TRUNC else f"more than {size} byte"
        return OSError(
            errno.EMSGSIZE,
            f"{self._url}: receive failed: a {told} datagram from {sender} did "
            f"not fit max_size={size} and was dropped; receive with a larger "
            "max_size",
        )

    async def _wait_room(self, fd: int, pause: float, waited: bool) -> float:
        # An AF_UNIX socket polls writable while the *peer's* queue is full,
        # so a second EAGAIN in a row backs off instead of spinning.
        if waited:
            await anyio.sleep(pause)
            pause = min(pause * 2 or 0.001, 0.05)
        await self._wait_writable(fd)
        return pause

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._url}{' closed' if self._closed else ''}>"


Packet = tuple[bytes, URL]


class DatagramSocket(_DatagramBase, anyio.abc.UnreliableObjectStream[Packet]):
    """A bound, unconnected datagram socket: items are ``(data, address)``.

    ``receive()`` returns ``(data, sender)`` with *sender* a URL that can be
    passed straight back: ``await sock.send((reply, sender))``. Addresses
    sent to may be ``str`` or ``URL``. ``url`` is the bound address.
    """

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        super().__init__(endpoint)
        self._family = self._sock.family
        self._pair = endpoint.send_sock is not None
        self._lookup_url = endpoint.lookup
        self._resolve = endpoint.resolve
        # Destinations by the address object's identity first (hashing a URL
        # costs more than a send's bookkeeping), by value second; senders'
        # URLs by sockaddr, so replying to a sender is two dict hits.
        self._by_id: dict[int, tuple[object, SockAddr]] = {}
        self._by_value: dict[object, SockAddr] = {}
        self._senders: dict[object, URL] = {}

    async def send(self, item: tuple[Data, str | URL]) -> None:
        """Send one datagram: ``item`` is ``(data, address)``."""
        data, address = item
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            entry = self._by_id.get(id(address))
            if entry is not None and entry[0] is address:
                target = entry[1]
            else:
                target = await self._target(address)
            if target is PEER:
                sock, fd = self._send_sock, self._send_fd
            else:
                sock, fd = self._sock, self._fd
            waited, pause = False, 0.0
            while True:
                try:
                    if target is PEER:
                        sock.send(data)
                    else:
                        sock.sendto(data, target)
                    break
                except BlockingIOError:
                    pause = await self._wait_room(fd, pause, waited)
                    waited = True
                except OSError as exc:
                    raise self._error(exc, f"send to {address}", data) from exc
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def send_to(self, data: Data, address: str | URL) -> None:
        """Send *data* to *address*: the same as ``send((data, address))``."""
        await self.send((data, address))

    async def receive(self, max_size: int | None = None) -> tuple[bytes, URL]:
        """Receive one datagram as ``(data, sender)``.

        *max_size* (default 65536, enough for any UDP payload) bounds the
        datagram; a bigger one is dropped and reported with OSError(EMSGSIZE).
        """
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            size = _check_size(max_size)
            if self._closed:
                raise self._closed_error()
            view = getattr(_local, "view", None)
            if view is None or len(view) <= size:
                view = _grow_buffer(size)
            waited = False
            while True:
                try:
                    count, address = self._sock.recvfrom_into(view, size + 1, _TRUNC)
                    break
                except BlockingIOError:
                    await self._wait_readable(self._fd)
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "receive") from exc
            sender = self._senders.get(address) or self._new_sender(address)
            data = bytes(view[: min(count, size)])  # before any await: shared buffer
            if not waited:
                await self._cancel_shielded_checkpoint()
            if count > size:
                raise self._truncated(count, size, sender)
            return data, sender

    receive_from = receive

    async def _target(self, address: str | URL) -> SockAddr:
        """The slow path of address lookup: by value, then ask the scheme."""
        target = self._by_value.get(address)
        if target is not None:
            self._by_id[id(address)] = (address, target)
            return target
        url = URL.parse(address)
        target = self._lookup_url(url)
        if target is None:  # a host name: resolve, don't cache (DNS answers expire)
            target = await self._resolve(url)
            if self._closed:
                raise self._closed_error()
            return target
        self._remember(address, target)
        return target

    def _remember(self, key: object, target: SockAddr) -> None:
        if len(self._by_value) >= _CACHE_LIMIT:
            self._by_value.clear()
            self._by_id.clear()
        self._by_value[key] = target
        self._by_id[id(key)] = (key, target)

    def _new_sender(self, address: Any) -> URL:
        if len(self._senders) >= _CACHE_LIMIT:
            self._senders.clear()
        url = url_from_sockaddr(self._family, socket.SOCK_DGRAM, address or "")
        self._senders[address] = url
        # Replying to a sender skips the lookup; an unnamed sender can only be
        # replied to on a pair (itself), elsewhere the lookup explains why not.
        if address:
            self._remember(url, address)
        elif self._pair:
            self._remember(url, PEER)
        return url


class DatagramChannel(_DatagramBase, anyio.abc.UnreliableObjectStream[bytes]):
    """A connected datagram socket: ``send(data)``/``receive()``, one datagram each.

    ``url`` is the peer. A peer that is not there shows as
    ConnectionRefusedError from a later send or receive (ICMP port
    unreachable); the channel stays usable.
    """

    async def send(self, item: Data) -> None:
        """Send one datagram to the peer."""
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            waited, pause = False, 0.0
            while True:
                try:
                    self._send_sock.send(item)
                    break
                except BlockingIOError:
                    pause = await self._wait_room(self._send_fd, pause, waited)
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "send", item) from exc
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def receive(self, max_size: int | None = None) -> bytes:
        """Receive one datagram (at most *max_size* bytes, default 65536)."""
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            size = _check_size(max_size)
            if self._closed:
                raise self._closed_error()
            view = getattr(_local, "view", None)
            if view is None or len(view) <= size:
                view = _grow_buffer(size)
            waited = False
            while True:
                try:
                    count = self._sock.recv_into(view, size + 1, _TRUNC)
                    break
                except BlockingIOError:
                    await self._wait_readable(self._fd)
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "receive") from exc
            data = bytes(view[: min(count, size)])  # before any await: shared buffer
            if not waited:
                await self._cancel_shielded_checkpoint()
            if count > size:
                raise self._truncated(count, size, self._url)
            return data

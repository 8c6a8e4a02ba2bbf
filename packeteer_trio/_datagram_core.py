"""What both faces' datagram classes share: descriptors, addresses, errors.

The trio face (:mod:`._datagram`) and the anyio face
(:mod:`._anyio._datagram`) differ only in how they wait and which resource
errors they raise; everything else lives here once: the receive buffer, the
destination and sender caches, and the error messages that name the URL.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from typing import Any

from ._endpoints import PEER, DatagramEndpoint, SockAddr
from ._errors import InvalidURL, with_url
from ._registry import Scheme, lookup
from ._sockinfo import url_from_sockaddr
from ._url import URL

# Any UDP payload fits (65507 bytes over IPv4, 65527 over IPv6).
DEFAULT_MAX_SIZE = 65536
Data = bytes | bytearray | memoryview
# Linux reports a datagram's real size when asked with MSG_TRUNC; elsewhere a
# full buffer (max_size + 1 bytes) is all we learn.
TRUNC = socket.MSG_TRUNC if sys.platform.startswith("linux") else 0
_CACHE_LIMIT = 1024
_local = threading.local()  # one receive buffer per thread: no await in between


def check_size(max_size: int | None) -> int:
    if max_size is None:
        return DEFAULT_MAX_SIZE
    if max_size < 0:
        raise ValueError("max_size must be >= 0")
    return max_size


def receive_buffer(size: int) -> memoryview:
    """This thread's buffer, at least ``size + 1`` bytes (to detect truncation).

    Callers copy out of it before their next await, so one per thread is safe.
    """
    view: memoryview | None = getattr(_local, "view", None)
    if view is None or len(view) <= size:
        view = memoryview(bytearray(max(size, DEFAULT_MAX_SIZE) + 1))
        _local.view = view
    return view


def datagram_scheme(url: URL, verb: str) -> Scheme:
    """The URL's scheme, if it has datagram behaviour; else a pointed InvalidURL."""
    scheme = lookup(url.scheme, str(url))
    has_datagram = "datagram" in scheme.behaviours
    if not has_datagram or (
        "stream" in scheme.behaviours and url.behaviour != "datagram"
    ):
        hint = " (or add ?behaviour=datagram)" if has_datagram else ""
        raise InvalidURL(
            f"{url}: a stream URL cannot {verb}(); use connect() or listen(){hint}"
        )
    return scheme


class DatagramCore:
    """Ownership, address caches and error messages of one datagram socket.

    Destinations are cached by the address object's identity first (hashing
    a URL costs more than a send's bookkeeping) and by value second; senders'
    URLs by sockaddr, so replying to a sender is two dict hits. Host names
    are resolved on every send: DNS answers expire.
    """

    url: URL

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        self.url = endpoint.url
        self._sock = endpoint.sock
        self._send_sock = endpoint.send_sock or endpoint.sock
        self._fd = self._sock.fileno()
        self._send_fd = self._send_sock.fileno()
        self._on_close = endpoint.on_close
        self._closed = False
        self._family = self._sock.family
        self._pair = endpoint.send_sock is not None
        self._lookup_url = endpoint.lookup
        self._resolve = endpoint.resolve
        self._by_id: dict[int, tuple[object, SockAddr]] = {}
        self._by_value: dict[object, SockAddr] = {}
        self._senders: dict[object, URL] = {}

    def _closed_error(self) -> Exception:  # pragma: no cover - each face's own
        raise NotImplementedError

    def _sockets_to_close(self) -> list[socket.socket]:
        """Mark closed; the sockets the face must notify_closing and close."""
        if self._closed:
            return []
        self._closed = True
        return list({self._sock, self._send_sock})

    def _after_close(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    def _error(self, exc: OSError, action: str, data: Data | None = None) -> Exception:
        if self._closed or exc.errno == errno.EBADF:
            return self._closed_error()
        if exc.errno == errno.EMSGSIZE and data is not None:
            size = memoryview(data).nbytes
            return OSError(
                errno.EMSGSIZE,
                f"{self.url}: {action} failed: the datagram is {size} bytes, "
                "too long for one datagram on this socket",
            )
        if exc.errno == errno.ECONNREFUSED:
            return ConnectionRefusedError(
                errno.ECONNREFUSED,
                f"{self.url}: {action} failed: connection refused (nothing is "
                "receiving at the peer's address; the socket stays usable)",
            )
        return with_url(exc, self.url, action)

    def _truncated(self, real: int, size: int, sender: object) -> OSError:
        told = f"{real}-byte" if TRUNC else f"more than {size} byte"
        origin = f" from {sender}" if sender is not None else ""
        return OSError(
            errno.EMSGSIZE,
            f"{self.url}: receive failed: a {told} datagram{origin} did not fit "
            f"max_size={size} and was dropped; receive with a larger max_size",
        )

    async def _target(self, address: str | URL) -> SockAddr:
        """The slow path of address lookup: by value, then ask the scheme."""
        target = self._by_value.get(address)
        if target is not None:
            if len(self._by_id) >= _CACHE_LIMIT:  # new objects, same values
                self._by_id.clear()
            self._by_id[id(address)] = (address, target)
            return target
        url = URL.parse(address)
        target = self._lookup_url(url)
        if target is None:  # a host name: resolve, don't cache
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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}{' closed' if self._closed else ''}>"

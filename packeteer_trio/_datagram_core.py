"""What both faces' datagram sockets share: ownership, addresses, errors.

The trio face (:mod:`._trio._datagram`) and the anyio face
(:mod:`._anyio._datagram`) differ only in how they wait and which resource
errors they raise (the :class:`._io.Face` each binds); everything else lives
once, here and in :mod:`._datagram_io` (the send and receive loops): the
sockets and their closing, the receive buffer, the destination and sender
caches, the pauses and retries when the kernel is short of memory, the
one shared send slow path, and the error messages that name the URL.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._endpoints import PEER, DatagramEndpoint, SendToPeer, SockAddr
from ._errors import LOGGER, with_url
from ._io import FIRST_PAUSE, MAX_PAUSE, SHORT_OF_MEMORY, FaceHooks, SocketAccess
from ._sockinfo import url_from_sockaddr
from ._url import URL

# Any UDP payload fits (65507 bytes over IPv4, 65527 over IPv6).
DEFAULT_MAX_SIZE = 65536
Data = bytes | bytearray | memoryview
# Linux reports a datagram's real size when asked with MSG_TRUNC; elsewhere a
# full buffer (max_size + 1 bytes) is all we learn.
TRUNC = socket.MSG_TRUNC if sys.platform.startswith("linux") else 0
_CACHE_LIMIT = 1024
# A send the kernel refuses for lack of memory (ENOBUFS, ENOMEM) is retried
# after 1, 2, 4 … 32 ms: at most 63 ms per call (send_to, send, send_many),
# so a server's replies stall briefly instead of the server dying. Past that
# the datagram is dropped, as a congested network would drop it, and logged
# (WARNING, at most once a second per socket). Receiving only waits longer.
SEND_RETRIES = 6
_DROP_LOG_INTERVAL = 1.0
# Where a datagram goes: a sockaddr, or PEER (an unnamed pair's other end).
Target = SockAddr | SendToPeer
_local = threading.local()  # one receive buffer per thread: no await in between


def check_size(max_size: int | None, default: int = DEFAULT_MAX_SIZE) -> int:
    if max_size is None:
        return default
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


class DatagramCore(SocketAccess, FaceHooks):
    """Ownership, address caches and error messages of one datagram socket.

    Destinations are cached by the address object's identity first (hashing
    a URL costs more than a send's bookkeeping) and by value second; senders'
    URLs by sockaddr, so replying to a sender is two dict hits. Host names
    are resolved on every send: DNS answers expire.
    """

    _noun = "datagram socket"
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
        self._by_id: dict[int, tuple[object, Target]] = {}
        self._by_value: dict[object, Target] = {}
        self._senders: dict[object, URL] = {}
        self._dropped = 0  # datagrams dropped since the last warning
        self._drop_logged = -_DROP_LOG_INTERVAL

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            for sock in {self._sock, self._send_sock}:
                # Wakes any task waiting on the fd with the "closed" error.
                self._notify_closing(sock.fileno())
                sock.close()
            self._run_on_close()
        await self._checkpoint()

    async def _wait_closable(
        self, wait: Callable[[int], Awaitable[None]], fd: int
    ) -> None:
        try:
            await wait(fd)
        except self._closed_exception:
            raise self._closed_error() from None

    async def _wait_data(self) -> None:
        await self._wait_closable(self._wait_readable, self._fd)

    async def _wait_room(self, fd: int, pause: float, again: bool) -> float:
        # An unconnected AF_UNIX socket polls writable while the *peer's*
        # queue is full, so a second EAGAIN in a row backs off, not spins.
        if again:
            await self._sleep(pause)
            pause = min(pause * 2 or 0.001, 0.05)
        else:
            pause = 0.0
        await self._wait_closable(self._wait_writable, fd)
        return pause

    async def _retry_send(
        self, exc: OSError, tries: int, action: str, data: Data
    ) -> bool:
        """After a failed send (*tries* retries so far in this call): True to
        retry after a pause (ENOBUFS, ENOMEM), False once the datagram is
        dropped for good; other errors are raised, naming the URL."""
        if exc.errno not in SHORT_OF_MEMORY or self._closed:
            raise self._error(exc, action, data) from exc
        if tries >= SEND_RETRIES:
            self._drop(exc, action)
            return False
        await self._sleep(FIRST_PAUSE * 2**tries)
        if self._closed:  # closed while we slept: the fd number is not ours
            raise self._closed_error()
        return True

    async def _send_slow(
        self,
        sock: socket.socket,
        fd: int,
        data: Data,
        target: Target,
        exc: OSError,
        tries: int,
        action: str,
    ) -> int:
        """The rest of one send whose first attempt failed with *exc*: wait
        for room (EAGAIN) or pause (ENOBUFS, ENOMEM) and try again, until the
        datagram is sent or dropped (see SEND_RETRIES). *tries* is the
        retries spent so far in this call, returned updated: ``send_many``
        has one budget for its batch. Ends after a schedule point, or raises.

        The one copy of the send loop: every send tries the syscall inline
        first and comes here only when the socket buffer is full or the
        kernel short of memory, which is rare, so this coroutine costs
        nothing in the common case.
        """
        pause, again = 0.0, False  # back off only on EAGAIN twice in a row
        while True:
            if isinstance(exc, BlockingIOError):
                pause = await self._wait_room(fd, pause, again)
                again = True
            else:
                if not await self._retry_send(exc, tries, action, data):
                    return tries  # dropped
                tries += 1
                again = False
            try:
                if target is PEER:
                    sock.send(data)
                else:
                    sock.sendto(data, target)
                return tries
            except OSError as failed:
                exc = failed

    def _drop(self, exc: OSError, action: str) -> None:
        self._dropped += 1
        now = time.monotonic()
        if now - self._drop_logged >= _DROP_LOG_INTERVAL:
            LOGGER.warning(
                "%s: dropped %d datagram(s) since the last report; the last: "
                "%s failed with %s %d times in a row",
                self.url,
                self._dropped,
                action,
                exc.strerror,
                SEND_RETRIES + 1,
            )
            self._dropped, self._drop_logged = 0, now

    async def _receive_pause(
        self, exc: OSError, pause: float, action: str, size: int
    ) -> float:
        """A receive (of at most *size* bytes) that failed with ENOMEM/ENOBUFS
        took nothing: sleep *pause* and return the next one; other errors are
        raised, naming the URL."""
        if exc.errno not in SHORT_OF_MEMORY or self._closed:
            raise self._error(exc, action, size=size) from exc
        await self._sleep(pause)
        if self._closed:
            raise self._closed_error()
        return min(pause * 2, MAX_PAUSE)

    def _error(
        self,
        exc: OSError,
        action: str,
        data: Data | None = None,
        size: int | None = None,
    ) -> Exception:
        if self._closed or exc.errno == errno.EBADF:
            return self._closed_error()
        if exc.errno == errno.EMSGSIZE and size is not None:
            # Windows: a receive into a too-small buffer fails (WSAEMSGSIZE)
            # and drops the datagram; report it as everywhere else.
            return self._truncated(size + 1, size, None)
        if exc.errno == errno.EMSGSIZE and data is not None:
            size = memoryview(data).nbytes
            return OSError(
                errno.EMSGSIZE,
                f"{self.url}: {action} failed: the datagram is {size} bytes, "
                "too long for one datagram on this socket",
            )
        # Windows says WSAECONNRESET where POSIX says ECONNREFUSED: an ICMP
        # port unreachable answered an earlier datagram.
        if exc.errno in (errno.ECONNREFUSED, errno.ECONNRESET):
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

    async def _target(self, address: str | URL) -> Target:
        """The slow path of address lookup: by value, then ask the scheme."""
        target = self._by_value.get(address)
        if target is not None:
            if len(self._by_id) >= _CACHE_LIMIT:  # new objects, same values
                self._by_id.clear()
            self._by_id[id(address)] = (address, target)
            return target
        url = URL.parse(address)
        found = self._lookup_url(url)
        if found is None:  # a host name: resolve, don't cache
            resolved = await self._resolve(url)
            if self._closed:
                raise self._closed_error()
            return resolved
        self._remember(address, found)
        return found

    def _remember(self, key: object, target: Target) -> None:
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

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._closed:
            raise self._closed_error()
        return self._fd, self._send_fd

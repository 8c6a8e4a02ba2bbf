"""What both faces' datagram classes share: the loops, addresses, errors.

The trio face (:mod:`._datagram`) and the anyio face
(:mod:`._anyio._datagram`) differ only in how they wait and which resource
errors they raise; everything else lives here once: the send and receive
loops, the receive buffer, the destination and sender caches, and the error
messages that name the URL. A face binds its waits and checkpoints per
instance (see :class:`._fdio.FaceHooks`) plus ``_sleep`` and the
``_closed_exception`` its waits raise when the socket is closed under them.

The loops keep the sandwich of :mod:`._fdio`: ``checkpoint_if_cancelled()``,
the syscall, and on EAGAIN a wait (the schedule point), else a closing
``cancel_shielded_checkpoint()``. ``Cancelled`` can only arrive before a
datagram leaves or is taken from the kernel. A datagram that does not fit
``max_size`` is detected (a buffer one byte larger; ``MSG_TRUNC`` on Linux
reports the real size) and reported, never silently cut.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ._endpoints import LOGGER, PEER, DatagramEndpoint, SockAddr
from ._errors import InvalidURL, with_url
from ._fdio import FIRST_PAUSE, MAX_PAUSE, SHORT_OF_MEMORY, FaceHooks
from ._io import SocketAccess
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
# A send the kernel refuses for lack of memory (ENOBUFS, ENOMEM) is retried
# after 1, 2, 4 … 32 ms: at most 63 ms per call (send_to, send, send_many),
# so a server's replies stall briefly instead of the server dying. Past that
# the datagram is dropped, as a congested network would drop it, and logged
# (WARNING, at most once a second per socket). Receiving only waits longer.
SEND_RETRIES = 6
_DROP_LOG_INTERVAL = 1.0
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


class DatagramCore(SocketAccess, FaceHooks):
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


class BoundDatagramIO(DatagramCore):
    """send_to / send_many / receive_from / receive_many of a bound socket."""

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        super().__init__(endpoint)
        self._pending: Exception | None = None  # an error receive_many deferred

    async def send_to(self, data: Data, address: str | URL) -> None:
        """Send one datagram to *address* (e.g. a ``sender`` from receive_from)."""
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
            waited, pause, tries = False, 0.0, 0
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
                    action = f"send_to {address}"
                    if not await self._retry_send(exc, tries, action, data):
                        break
                    tries += 1
                    waited = True
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def send_many(self, items: Iterable[tuple[Data, str | URL]]) -> None:
        """Send every ``(data, address)`` behind one checkpoint.

        Waits only while the socket buffer is full. If it raises (or is
        cancelled while waiting for room), the datagrams before the failing
        one have been sent and the rest have not. A datagram the kernel has
        no memory for (ENOBUFS, ENOMEM) even after the retries is dropped,
        not raised: see SEND_RETRIES.
        """
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            # Look every address up first: any DNS wait comes before sending.
            batch = []
            by_id = self._by_id
            for data, address in items:
                entry = by_id.get(id(address))
                if entry is not None and entry[0] is address:
                    batch.append((data, address, entry[1]))
                else:
                    batch.append((data, address, await self._target(address)))
            sock, fd, send_sock, send_fd = (
                self._sock,
                self._fd,
                self._send_sock,
                self._send_fd,
            )
            waited, pause, tries = False, 0.0, 0
            for data, address, target in batch:
                again = False  # back off only on repeated EAGAIN for one datagram
                while True:
                    try:
                        if target is PEER:
                            send_sock.send(data)
                        else:
                            sock.sendto(data, target)
                        break
                    except BlockingIOError:
                        wait_fd = send_fd if target is PEER else fd
                        pause = await self._wait_room(wait_fd, pause, again)
                        again = waited = True
                    except OSError as exc:
                        action = f"send_many to {address}"
                        if not await self._retry_send(exc, tries, action, data):
                            break  # dropped: on to the next one
                        tries += 1  # one budget for the whole batch
                        waited = True
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def receive_from(self, max_size: int | None = None) -> tuple[bytes, URL]:
        """Receive one datagram: ``(data, sender)``; *sender* works for send_to."""
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            size = check_size(max_size)
            if self._closed:
                raise self._closed_error()
            if self._pending is not None:
                error, self._pending = self._pending, None
                raise error
            waited, pause = False, FIRST_PAUSE
            while True:
                try:
                    # As in receive_many: an oversized datagram comes back at
                    # its real length (MSG_TRUNC), which is all we use of it.
                    data, address = self._sock.recvfrom(size + 1, TRUNC)
                    break
                except BlockingIOError:
                    await self._wait_data()
                    waited = True
                except OSError as exc:
                    pause = await self._receive_pause(exc, pause, "receive_from", size)
                    waited = True
            sender = self._senders.get(address) or self._new_sender(address)
            if not waited:
                await self._cancel_shielded_checkpoint()
            if len(data) > size:
                raise self._truncated(len(data), size, sender)
            return data, sender

    async def receive_many(
        self, max_count: int = 64, *, max_size: int | None = None
    ) -> list[tuple[bytes, URL]]:
        """Wait for one datagram, then take every one already queued.

        Returns up to *max_count* ``(data, sender)`` pairs behind a single
        checkpoint. An error met after the first datagram (a truncated one,
        say) is raised by the next receive, so nothing taken is lost.
        """
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            size = check_size(max_size)
            if max_count < 1:
                raise ValueError("max_count must be >= 1")
            if self._closed:
                raise self._closed_error()
            if self._pending is not None:
                error, self._pending = self._pending, None
                raise error
            # Per datagram, recvfrom() costs less than recvfrom_into() plus a
            # copy out of the shared buffer (~0.3 us of ~5). With MSG_TRUNC a
            # datagram larger than the size+1 bytes asked for comes back as a
            # bytes object of its real length whose tail is garbage: only its
            # length is used, to report it.
            recvfrom, senders, limit = self._sock.recvfrom, self._senders, size + 1
            waited, pause = False, FIRST_PAUSE
            while True:
                try:
                    data, address = recvfrom(limit, TRUNC)
                    break
                except BlockingIOError:
                    await self._wait_data()
                    waited = True
                except OSError as exc:
                    pause = await self._receive_pause(exc, pause, "receive_many", size)
                    waited = True
            # From here on no await until the end: nothing taken can be lost.
            result: list[tuple[bytes, URL]] = []
            append = result.append
            failure: Exception | None = None
            while True:
                sender = senders.get(address) or self._new_sender(address)
                if len(data) > size:
                    failure = self._truncated(len(data), size, sender)
                    break
                append((data, sender))
                if len(result) >= max_count:
                    break
                try:
                    data, address = recvfrom(limit, TRUNC)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno not in SHORT_OF_MEMORY:  # that one can wait
                        failure = self._error(exc, "receive_many", size=size)
                    break
            if not waited:
                await self._cancel_shielded_checkpoint()
            if failure is not None:
                if not result:
                    raise failure
                self._pending = failure
            return result


class ConnectedDatagramIO(DatagramCore):
    """send / receive of a connected socket, one datagram each."""

    async def send(self, value: Data) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            waited, pause, tries = False, 0.0, 0
            while True:
                try:
                    self._send_sock.send(value)
                    break
                except BlockingIOError:
                    pause = await self._wait_room(self._send_fd, pause, waited)
                    waited = True
                except OSError as exc:
                    if not await self._retry_send(exc, tries, "send", value):
                        break
                    tries += 1
                    waited = True
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def receive(self, *, max_size: int | None = None) -> bytes:
        # max_size is keyword-only: the ABCs' receive() takes no argument, so
        # an extra one must not be reachable positionally.
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            size = check_size(max_size)
            if self._closed:
                raise self._closed_error()
            view = receive_buffer(size)
            waited, pause = False, FIRST_PAUSE
            while True:
                try:
                    count = self._sock.recv_into(view, size + 1, TRUNC)
                    break
                except BlockingIOError:
                    await self._wait_data()
                    waited = True
                except OSError as exc:
                    pause = await self._receive_pause(exc, pause, "receive", size)
                    waited = True
            data = bytes(view[: min(count, size)])  # before any await: shared buffer
            if not waited:
                await self._cancel_shielded_checkpoint()
            if count > size:
                raise self._truncated(count, size, self.url)
            return data

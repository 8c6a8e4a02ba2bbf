"""The trio face of datagrams: DatagramSocket (bound) and DatagramChannel (connected).

The hot paths keep the sandwich of :mod:`._stream`, written out inline:
``checkpoint_if_cancelled()``, the syscall, and on EAGAIN a wait (the schedule
point), else a closing ``cancel_shielded_checkpoint()``. ``Cancelled`` can only
arrive before a datagram leaves or is taken from the kernel.

Receiving reads into a per-thread buffer one byte larger than ``max_size``
(with ``MSG_TRUNC`` on Linux, which reports the real size), so a datagram that
does not fit is detected and reported, never silently cut.

Destinations: ``send_to`` takes ``str | URL``; the scheme turns it into a
sockaddr and we cache that per socket, keyed by the object's identity first
(hashing a URL costs more than a send's bookkeeping) and by value second.
Senders' URLs are cached the other way round, so replying to ``sender`` is
two dict hits. Host names are resolved on every send: DNS answers expire.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from collections.abc import Iterable
from typing import Any

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    notify_closing,
    wait_readable,
    wait_writable,
)

from ._endpoints import PEER, DatagramEndpoint, SockAddr
from ._errors import InvalidURL, with_url
from ._io import ConflictDetector
from ._packet import PacketChannel
from ._registry import Scheme, lookup
from ._sockinfo import socket_url, url_from_sockaddr
from ._url import URL

# Any UDP payload fits (65507 bytes over IPv4, 65527 over IPv6).
DEFAULT_MAX_SIZE = 65536
Data = bytes | bytearray | memoryview
# Linux reports a datagram's real size when asked with MSG_TRUNC; elsewhere a
# full buffer (max_size + 1 bytes) is all we learn.
_TRUNC = socket.MSG_TRUNC if sys.platform.startswith("linux") else 0
_CACHE_LIMIT = 1024
_local = threading.local()  # one receive buffer per thread: no await in between


def _grow_buffer(size: int) -> memoryview:
    view = memoryview(bytearray(max(size, DEFAULT_MAX_SIZE) + 1))
    _local.view = view
    return view


def _check_size(max_size: int | None) -> int:
    if max_size is None:
        return DEFAULT_MAX_SIZE
    if max_size < 0:
        raise ValueError("max_size must be >= 0")
    return max_size


class _DatagramBase(trio.abc.AsyncResource):
    """What both classes share: ownership, closing, options, errors."""

    url: URL

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        self.url = endpoint.url
        self._sock = endpoint.sock
        self._send_sock = endpoint.send_sock or endpoint.sock
        self._fd = self._sock.fileno()
        self._send_fd = self._send_sock.fileno()
        self._on_close = endpoint.on_close
        self._closed = False
        self._send_conflict = ConflictDetector(
            f"{self.url}: another task is already sending on this socket",
            trio.BusyResourceError,
        )
        self._receive_conflict = ConflictDetector(
            f"{self.url}: another task is already receiving on this socket",
            trio.BusyResourceError,
        )

    @property
    def socket(self) -> socket.socket:
        """The underlying (non-blocking) socket. Don't close it behind our back."""
        return self._sock

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            # Wakes any task waiting on the fd with ClosedResourceError.
            for sock in {self._sock, self._send_sock}:
                notify_closing(sock)
                sock.close()
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close()
        await checkpoint()

    def fileno(self) -> int:
        return self._sock.fileno()

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._sock.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        if buflen:
            return self._sock.getsockopt(level, option, buflen)
        return self._sock.getsockopt(level, option)

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._closed:
            raise self._closed_error()
        return self._fd, self._send_fd

    def _closed_error(self) -> trio.ClosedResourceError:
        return trio.ClosedResourceError(f"{self.url}: this datagram socket was closed")

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
        told = f"{real}-byte" if _TRUNC else f"more than {size} byte"
        origin = f" from {sender}" if sender is not None else ""
        return OSError(
            errno.EMSGSIZE,
            f"{self.url}: receive failed: a {told} datagram{origin} did not fit "
            f"max_size={size} and was dropped; receive with a larger max_size",
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}{' closed' if self._closed else ''}>"


class DatagramSocket(_DatagramBase):
    """A bound, unconnected datagram socket from :func:`open_datagram`.

    ``url`` is the bound address (``udp4://127.0.0.1:40123``): what other
    sockets see as the sender, and what they can ``send_to``.
    """

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        super().__init__(endpoint)
        self._family = self._sock.family
        self._pair = endpoint.send_sock is not None
        self._lookup_url = endpoint.lookup
        self._resolve = endpoint.resolve
        self._by_id: dict[int, tuple[object, SockAddr]] = {}
        self._by_value: dict[object, SockAddr] = {}
        self._senders: dict[object, URL] = {}
        self._pending: Exception | None = None  # an error receive_many deferred

    async def send_to(self, data: Data, address: str | URL) -> None:
        """Send one datagram to *address* (e.g. a ``sender`` from receive_from)."""
        with self._send_conflict:
            await checkpoint_if_cancelled()
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
                    raise self._error(exc, f"send_to {address}", data) from exc
            if not waited:
                await cancel_shielded_checkpoint()

    async def send_many(self, items: Iterable[tuple[Data, str | URL]]) -> None:
        """Send every ``(data, address)`` behind one checkpoint.

        Waits only while the socket buffer is full. If it raises (or is
        cancelled while waiting for room), the datagrams before the failing
        one have been sent and the rest have not.
        """
        with self._send_conflict:
            await checkpoint_if_cancelled()
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
            waited, pause = False, 0.0
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
                        raise self._error(exc, f"send_many to {address}", data) from exc
            if not waited:
                await cancel_shielded_checkpoint()

    async def receive_from(self, max_size: int | None = None) -> tuple[bytes, URL]:
        """Receive one datagram: ``(data, sender)``; *sender* works for send_to."""
        with self._receive_conflict:
            await checkpoint_if_cancelled()
            size = _check_size(max_size)
            if self._closed:
                raise self._closed_error()
            if self._pending is not None:
                error, self._pending = self._pending, None
                raise error
            view = getattr(_local, "view", None)
            if view is None or len(view) <= size:
                view = _grow_buffer(size)
            waited = False
            while True:
                try:
                    count, address = self._sock.recvfrom_into(view, size + 1, _TRUNC)
                    break
                except BlockingIOError:
                    await self._wait_data()
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "receive_from") from exc
            sender = self._senders.get(address) or self._new_sender(address)
            data = bytes(view[: min(count, size)])  # before any await: shared buffer
            if not waited:
                await cancel_shielded_checkpoint()
            if count > size:
                raise self._truncated(count, size, sender)
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
            await checkpoint_if_cancelled()
            size = _check_size(max_size)
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
            waited = False
            while True:
                try:
                    data, address = recvfrom(limit, _TRUNC)
                    break
                except BlockingIOError:
                    await self._wait_data()
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "receive_many") from exc
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
                    data, address = recvfrom(limit, _TRUNC)
                except BlockingIOError:
                    break
                except OSError as exc:
                    failure = self._error(exc, "receive_many")
                    break
            if not waited:
                await cancel_shielded_checkpoint()
            if failure is not None:
                if not result:
                    raise failure
                self._pending = failure
            return result

    async def _wait_data(self) -> None:
        try:
            await wait_readable(self._fd)
        except trio.ClosedResourceError:
            raise self._closed_error() from None

    async def _wait_room(self, fd: int, pause: float, again: bool) -> float:
        # An unconnected AF_UNIX socket polls writable while the *peer's*
        # queue is full, so a second EAGAIN in a row backs off, not spins.
        if again:
            await trio.sleep(pause)
            pause = min(pause * 2 or 0.001, 0.05)
        else:
            pause = 0.0
        try:
            await wait_writable(fd)
        except trio.ClosedResourceError:
            raise self._closed_error() from None
        return pause

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


class DatagramChannel(_DatagramBase, trio.abc.Channel[bytes]):
    """A connected datagram socket from :func:`connect_datagram`.

    ``send``/``receive`` move one datagram each; ``url`` is the peer. A peer
    that is not there shows as ConnectionRefusedError from a later send or
    receive (ICMP port unreachable); the channel stays usable.
    """

    async def send(self, value: Data) -> None:
        with self._send_conflict:
            await checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            waited = False
            while True:
                try:
                    self._send_sock.send(value)
                    break
                except BlockingIOError:
                    try:
                        await wait_writable(self._send_fd)
                    except trio.ClosedResourceError:
                        raise self._closed_error() from None
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "send", value) from exc
            if not waited:
                await cancel_shielded_checkpoint()

    async def receive(self, max_size: int | None = None) -> bytes:
        with self._receive_conflict:
            await checkpoint_if_cancelled()
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
                    try:
                        await wait_readable(self._fd)
                    except trio.ClosedResourceError:
                        raise self._closed_error() from None
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "receive") from exc
            data = bytes(view[: min(count, size)])  # before any await: shared buffer
            if not waited:
                await cancel_shielded_checkpoint()
            if count > size:
                raise self._truncated(count, size, self.url)
            return data

    @property
    def local_address(self) -> URL:
        return socket_url(self._sock, peer=False)

    @property
    def peer_address(self) -> URL:
        if self._send_sock is not self._sock:  # an unnamed pair: its own peer
            return self.url
        return socket_url(self._sock, peer=True)


def _datagram_scheme(url: URL, verb: str) -> Scheme:
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


async def open_datagram(url: str | URL) -> DatagramSocket:
    """Bind a datagram socket at *url* (port 0 = ephemeral; see ``sock.url``)."""
    url = URL.parse(url)
    scheme = _datagram_scheme(url, "open_datagram")
    if scheme.factory is not None:  # a scheme from register_scheme()
        from ._extend import open_user_datagram  # _extend imports this module

        return await open_user_datagram(scheme.factory, url)
    if scheme.open_datagram is None:
        raise InvalidURL(
            f"{url}: {url.scheme}:// cannot be bound; use connect_datagram()"
        )
    return DatagramSocket(await scheme.open_datagram(url))


async def connect_datagram(
    url: str | URL, *, local: str | URL | None = None
) -> DatagramChannel | PacketChannel:
    """A channel of datagrams to *url*; *local* binds our end first.

    For ``local://`` peers to reply, our end needs an address: give *local*
    (a path or abstract name); on Linux an abstract one is picked otherwise.
    A packet device (``tun://``, ``tap://``) gives a :class:`PacketChannel`.
    """
    url = URL.parse(url)
    local_url = None if local is None else URL.parse(local)
    scheme = _datagram_scheme(url, "connect_datagram")
    if scheme.factory is not None:  # a scheme from register_scheme()
        from ._extend import connect_user_datagram  # _extend imports this module

        return await connect_user_datagram(scheme.factory, url, local_url)
    if scheme.connect_packet is not None:
        if local_url is not None:
            raise InvalidURL(f"{url}: {url.scheme}:// has no local address to bind")
        # The checkpoint comes first: once the device exists, nothing may
        # cancel us before the channel owns it.
        await checkpoint()
        return PacketChannel(await scheme.connect_packet(url))
    if scheme.connect_datagram is None:
        raise InvalidURL(f"{url}: {url.scheme}:// cannot connect; use open_datagram()")
    return DatagramChannel(await scheme.connect_datagram(url, local_url))

"""The trio face of datagrams: DatagramSocket (bound) and DatagramChannel (connected).

The hot paths keep the sandwich of :mod:`._stream`, written out inline:
``checkpoint_if_cancelled()``, the syscall, and on EAGAIN a wait (the schedule
point), else a closing ``cancel_shielded_checkpoint()``. ``Cancelled`` can only
arrive before a datagram leaves or is taken from the kernel.

Receiving reads into a per-thread buffer one byte larger than ``max_size``
(with ``MSG_TRUNC`` on Linux, which reports the real size), so a datagram that
does not fit is detected and reported, never silently cut. The address caches
and error messages are shared with the anyio face in :mod:`._datagram_core`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    notify_closing,
    wait_readable,
    wait_writable,
)

from ._datagram_core import (
    TRUNC,
    Data,
    DatagramCore,
    check_size,
    datagram_scheme,
    receive_buffer,
)
from ._endpoints import PEER, DatagramEndpoint
from ._errors import InvalidURL
from ._io import ConflictDetector
from ._packet import PacketChannel
from ._sockinfo import socket_url
from ._url import URL


class _DatagramBase(DatagramCore, trio.abc.AsyncResource):
    """What both classes share beyond the core: conflicts, closing, options."""

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        super().__init__(endpoint)
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
        for sock in self._sockets_to_close():
            # Wakes any task waiting on the fd with ClosedResourceError.
            notify_closing(sock)
            sock.close()
        self._after_close()
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


class DatagramSocket(_DatagramBase):
    """A bound, unconnected datagram socket from :func:`open_datagram`.

    ``url`` is the bound address (``udp4://127.0.0.1:40123``): what other
    sockets see as the sender, and what they can ``send_to``.
    """

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        super().__init__(endpoint)
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
            size = check_size(max_size)
            if self._closed:
                raise self._closed_error()
            if self._pending is not None:
                error, self._pending = self._pending, None
                raise error
            waited = False
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
                    raise self._error(exc, "receive_from") from exc
            sender = self._senders.get(address) or self._new_sender(address)
            if not waited:
                await cancel_shielded_checkpoint()
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
            await checkpoint_if_cancelled()
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
            waited = False
            while True:
                try:
                    data, address = recvfrom(limit, TRUNC)
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
                    data, address = recvfrom(limit, TRUNC)
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
            size = check_size(max_size)
            if self._closed:
                raise self._closed_error()
            view = receive_buffer(size)
            waited = False
            while True:
                try:
                    count = self._sock.recv_into(view, size + 1, TRUNC)
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


async def open_datagram(url: str | URL) -> DatagramSocket:
    """Bind a datagram socket at *url* (port 0 = ephemeral; see ``sock.url``)."""
    url = URL.parse(url)
    scheme = datagram_scheme(url, "open_datagram")
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
    scheme = datagram_scheme(url, "connect_datagram")
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

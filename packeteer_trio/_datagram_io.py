"""The datagram loops both faces share: bound sockets and connected ones.

Every loop keeps the sandwich of :mod:`._fdio`: ``checkpoint_if_cancelled()``,
the syscall, and on EAGAIN a wait (the schedule point), else a closing
``cancel_shielded_checkpoint()``. ``Cancelled`` can only arrive before a
datagram leaves or is taken from the kernel. A datagram that does not fit
``max_size`` is detected (a buffer one byte larger; ``MSG_TRUNC`` on Linux
reports the real size) and reported, never silently cut.

Sends try the syscall inline and share one slow path
(:meth:`._datagram_core.DatagramCore._send_slow`). The three receive loops
(``receive_from``, the first datagram of ``receive_many``, a connected
``receive``) each keep their wait loop inline instead: an idle server waits
on almost every receive, and a shared slow-path coroutine (the partial for
the syscall, a coroutine, its await) measured ~0.7 us per wait on the
benchmark machine, ~4 % of the ~18 us of server CPU a one-at-a-time UDP
request costs (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from ._datagram_core import (
    TRUNC,
    Data,
    DatagramCore,
    check_size,
    receive_buffer,
)
from ._endpoints import PEER, DatagramEndpoint
from ._io import FIRST_PAUSE, SHORT_OF_MEMORY
from ._url import URL


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
            try:
                if target is PEER:
                    self._send_sock.send(data)
                else:
                    self._sock.sendto(data, target)
            except OSError as exc:
                if target is PEER:
                    sock, fd = self._send_sock, self._send_fd
                else:
                    sock, fd = self._sock, self._fd
                action = f"send_to {address}"
                await self._send_slow(sock, fd, data, target, exc, 0, action)
            else:
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
            sock, send_sock = self._sock, self._send_sock
            waited, tries = False, 0
            for data, address, target in batch:
                try:
                    if target is PEER:
                        send_sock.send(data)
                    else:
                        sock.sendto(data, target)
                except OSError as exc:
                    if target is PEER:
                        failed, fd = send_sock, self._send_fd
                    else:
                        failed, fd = sock, self._fd
                    action = f"send_many to {address}"
                    # A datagram dropped for good: on to the next one.
                    tries = await self._send_slow(
                        failed, fd, data, target, exc, tries, action
                    )
                    waited = True
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def receive_from(self, max_size: int | None = None) -> tuple[bytes, URL]:
        """Receive one datagram: ``(data, sender)``; *sender* works for send_to."""
        # The wait loop is inline here, in receive_many and in receive: see
        # the module docstring for why (a shared one costs each wait ~0.7 us).
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
    """send / receive of a connected socket, one datagram each.

    ``send`` goes through the pair's send socket, which for a connected
    socket is the socket itself: its target is the socket's own peer (PEER).
    """

    async def send(self, value: Data) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            try:
                self._send_sock.send(value)
            except OSError as exc:
                sock, fd = self._send_sock, self._send_fd
                await self._send_slow(sock, fd, value, PEER, exc, 0, "send")
            else:
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

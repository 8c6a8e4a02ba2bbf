"""The anyio face's datagram sockets on asyncio loops with ``add_reader``.

The loop reads datagrams ahead of the caller into a bounded queue, and sends
go straight to the kernel, as the read-ahead streams do
(:mod:`._readahead`). The lean loops of :mod:`.._datagram_io` wait through
``anyio.wait_readable``: an ``add_reader``/``remove_reader`` pair and a
future per datagram, and a ``sleep(0)`` per operation for anyio's checkpoint.
Here the socket stays registered while the queue has room: a callback reads
what comes (one datagram when a receiver waits for it, else all the kernel
holds, up to the bound), a ``receive`` takes from the queue, and a ``send``
calls ``sendto`` and waits only when the kernel's buffer is full
(:mod:`._datagram_send`).

Why a reader callback and not ``loop.create_datagram_endpoint(sock=...)``
(both tried; 64-byte UDP round trips, both ends in one loop, medians of 5,
on a loaded 2-core VM): on plain asyncio the selector transport measured
15,700-32,500 round trips/s (27-64 us of CPU each: it reads every datagram
into a fresh 256 KiB buffer) against 24,700-36,300 (27-32 us) for the
callback. On uvloop its C transport is faster in a bare prototype without
our bookkeeping (51,800-68,900/s, 13-19 us, against 36,400-43,400/s,
20-27 us), but it cannot keep our promises: uvloop's ``UDPTransport`` has no
``pause_reading`` (a flood would be bounded only by dropping what was
already read), reports receive and send errors out of band
(``error_received``), and no transport reads AF_UNIX descriptors
(``recvmsg``); asyncio's cannot tell a cut AF_UNIX datagram from a whole
one either. One engine for both loops, and the uvloop round-trip target
missed by that margin (``benchmarks/README.md``).

- Reading starts with the first receive: until then datagrams (and the
  errors ICMP brings, for a send to see) wait in the kernel, as without us.
- Bounded: reading stops at :data:`MAX_QUEUED` datagrams or
  :data:`HIGH_WATER` bytes, and starts again at half that; the kernel then
  queues (AF_UNIX: the sender waits) or drops (UDP), as it would for a
  socket nobody reads.
- Never cut: a datagram is read into ``max_size + 1`` bytes of the largest
  ``max_size`` asked for so far (at least 64 KiB, any UDP payload); one that
  does not fit the receive that takes it is reported with ``EMSGSIZE``. (One
  read ahead while every receive asked for less, and bigger than that, is
  reported too, even to a later receive that asks for more.)
- AF_UNIX sockets are read with ``recvmsg``: descriptors stay with their
  datagram for ``receive_fds``, and are closed when a plain ``receive``
  takes it (as ``recv`` drops them) or the socket closes; credentials stay
  with it for ``receive_with_credentials``.
- An error the kernel reports on a read (ECONNREFUSED after an ICMP port
  unreachable) takes its place in the queue: the receive that comes to it
  raises it, and the socket stays usable. ENOMEM/ENOBUFS pause reading for
  1 ms, doubling up to 100 ms.
- Cancellation loses nothing: a receive takes from the queue only after its
  last await. Checkpoints as for the streams: an operation that waits
  yields in its wait; one that does not spends :data:`OP_COST` plus its
  bytes from the socket's :data:`BUDGET` and yields, before anything moves,
  when that is spent (once per 16 small datagrams).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections import deque
from typing import Any

from .._datagram_core import DEFAULT_MAX_SIZE, TRUNC, check_size
from .._errors import DescriptorsDropped
from .._fdpass import (
    HAS_CREDENTIALS,
    SO_PASSCRED,
    Credentials,
    MessageIO,
    close_all,
    control_size,
    cut,
    not_unix,
    take_ancillary,
    truncated,
)
from .._io import FIRST_PAUSE, MAX_PAUSE, SHORT_OF_MEMORY
from .._url import URL
from ._datagram_send import DirectSend
from ._readahead import BUDGET, OP_COST, yield_now

MAX_QUEUED = 256
HIGH_WATER = 256 * 1024
# Every so many callbacks that read one datagram for a waiting receiver, one
# reads on until EAGAIN, to notice a burst (see _readable).
PROBE_EVERY = 8
_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
# recvmsg's flags echo MSG_CMSG_CLOEXEC back; only these say something. (Plain
# ints: an IntFlag's & costs more than the read.)
_CUT = int(getattr(socket, "MSG_TRUNC", 0)) | int(getattr(socket, "MSG_CTRUNC", 0))
_AF_UNIX = getattr(socket, "AF_UNIX", None)

# One received datagram: (data, sockaddr, ancillary), or (None, None, OSError)
# for an error the kernel reported in its place. Ancillary (AF_UNIX only, and
# only when there was some): (fds, credentials, error, flags).
Entry = tuple[Any, Any, Any]


class DatagramReadAhead(DirectSend, MessageIO):
    """The queue, the reader callback and the receive and send paths.

    A class of :mod:`._datagram` calls :meth:`_read_ahead` when made on a
    loop with ``add_reader``; until then (and on other loops) ``_queue`` is
    None and its methods run the lean loops.
    """

    _queue: deque[Entry] | None = None

    def _read_ahead(self) -> None:
        self._queue = deque()
        self._queued_bytes = 0
        self._loop = asyncio.get_running_loop()
        self._budget = BUDGET
        self._reading = False
        self._paused: asyncio.TimerHandle | None = None
        self._pause = FIRST_PAUSE
        self._waiter: asyncio.Future[None] | None = None
        self._burst = False
        self._probe = PROBE_EVERY
        self._read_size = DEFAULT_MAX_SIZE + 1
        self._unix = self._family == _AF_UNIX
        self._ancsize = 0

    # -- the loop's side -------------------------------------------------------

    def _start_reading(self) -> None:
        # Reading starts with the first receive: until then datagrams wait in
        # the kernel (and errors for the sends to see), as without us.
        if self._unix and not self._ancsize:
            passcred = HAS_CREDENTIALS and bool(
                self._sock.getsockopt(socket.SOL_SOCKET, SO_PASSCRED)
            )
            self._ancsize = control_size(passcred)
        self._reading = True
        self._loop.add_reader(self._fd, self._readable)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _readable(self) -> None:
        queue = self._queue
        assert queue is not None
        waiter = self._waiter
        # A waiting receiver gets one datagram now, unless datagrams came in
        # bursts lately; with none waiting, or in a burst, read all the
        # kernel holds (up to the bound) in this turn. So ping-pong pays for
        # the EAGAIN that ends a read-all only once in PROBE_EVERY callbacks
        # (which notice a burst), and a burst pays one per loop turn, not a
        # loop turn per datagram.
        more = waiter is None or self._burst
        if not more:
            self._probe -= 1
            if self._probe <= 0:
                self._probe = PROBE_EVERY
                more = True
        count = 0
        while True:
            try:
                if self._unix:
                    entry = self._read_message()
                else:
                    data, address = self._sock.recvfrom(self._read_size, TRUNC)
                    entry = (data, address, None)
            except (BlockingIOError, InterruptedError):
                self._burst = count > 1
                break
            except OSError as exc:
                if exc.errno in SHORT_OF_MEMORY:
                    self._pause_reading()
                    break
                entry = (None, None, exc)
            queue.append(entry)
            count += 1
            if entry[0] is not None:
                self._queued_bytes += len(entry[0])
                self._pause = FIRST_PAUSE
            if len(queue) >= MAX_QUEUED or self._queued_bytes >= HIGH_WATER:
                self._stop_reading()
                break
            if entry[0] is None:
                # libuv (uvloop) stops watching a descriptor that polled with
                # an error (POLLERR: the ICMP error just read), telling
                # nobody; registering again starts it again.
                self._loop.remove_reader(self._fd)
                self._loop.add_reader(self._fd, self._readable)
                break
            if not more:
                break
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _read_message(self) -> Entry:
        if sys.platform == "win32":  # pragma: no cover - no AF_UNIX in CPython
            raise not_unix(self.url)
        data, ancdata, flags, address = self._sock.recvmsg(
            self._read_size, self._ancsize, _CLOEXEC
        )
        if not ancdata and not flags & _CUT:
            return data, address, None
        # Every descriptor is accounted for from here: queued with its
        # datagram, or closed by take_ancillary with the error kept.
        fds, credentials, error = take_ancillary(self.url, data, ancdata, flags)
        return data, address, (fds, credentials, error, flags)

    def _pause_reading(self) -> None:
        # The kernel is short of memory: try again later, not in a busy loop.
        self._stop_reading()
        self._paused = self._loop.call_later(self._pause, self._resume)
        self._pause = min(self._pause * 2, MAX_PAUSE)

    def _resume(self) -> None:
        self._paused = None
        if not self._closed:
            self._start_reading()

    # -- receiving -------------------------------------------------------------

    async def _next(self, size: int) -> Entry:
        """The next entry, for a receive of up to *size* bytes: taken from the
        queue after the last await (so cancellation loses nothing)."""
        queue = self._queue
        assert queue is not None
        if size >= self._read_size:
            self._read_size = size + 1  # for datagrams read from now on
        if queue and not self._closed:
            head = queue[0][0]
            self._budget -= OP_COST + (len(head) if head is not None else 0)
            if self._budget <= 0:
                self._budget = BUDGET
                await yield_now()
        else:
            if not (self._reading or self._paused or self._closed):
                self._start_reading()
            self._budget = BUDGET
            while not queue:
                if self._closed:
                    raise self._closed_error()
                self._waiter = waiter = self._loop.create_future()
                try:
                    await waiter
                finally:
                    self._waiter = None
        if self._closed:  # closed by another task while we yielded
            raise self._closed_error()
        entry = queue.popleft()
        if entry[0] is not None:
            self._queued_bytes -= len(entry[0])
        if (
            not (self._reading or self._paused)
            and len(queue) <= MAX_QUEUED // 2
            and self._queued_bytes <= HIGH_WATER // 2
        ):
            self._start_reading()  # the queue was full: room again
        return entry

    def _plain(self, entry: Entry, size: int, sender: object) -> bytes:
        """The data of *entry* for a plain receive of up to *size* bytes."""
        data: bytes = entry[0]
        extra = entry[2]
        if extra is not None:  # AF_UNIX ancillary data: a recv() drops it
            fds, _, error, flags = extra
            close_all(fds)
            if error is not None and not isinstance(error, DescriptorsDropped):
                raise error
            if cut(data, flags, size):
                raise truncated(self.url, size, [], "datagram")
        if len(data) > size:
            raise self._truncated(len(data), size, sender)
        return data

    async def _receive_from(self, max_size: int | None) -> tuple[bytes, URL]:
        conflict = self._receive_conflict  # inline: see ConflictDetector
        if conflict.held:
            raise conflict.busy()
        conflict.held = True
        try:
            size = check_size(max_size)
            entry = await self._next(size)
            data, address, extra = entry
            if data is None:
                raise self._error(extra, "receive_from", size=size) from extra
            sender = self._senders.get(address) or self._new_sender(address)
            return self._plain(entry, size, sender), sender
        finally:
            conflict.held = False

    async def _receive_many(
        self, max_count: int, max_size: int | None
    ) -> list[tuple[bytes, URL]]:
        with self._receive_conflict:
            size = check_size(max_size)
            if max_count < 1:
                raise ValueError("max_count must be >= 1")
            entry = await self._next(size)
            queue = self._queue
            assert queue is not None
            result: list[tuple[bytes, URL]] = []
            while True:
                data, address, extra = entry
                if data is None:
                    if result:  # the next receive raises it
                        queue.appendleft(entry)
                        break
                    raise self._error(extra, "receive_many", size=size) from extra
                sender = self._senders.get(address) or self._new_sender(address)
                if extra is not None or len(data) > size:
                    if result:  # the next receive takes (or reports) it
                        queue.appendleft(entry)
                        self._queued_bytes += len(data)
                        break
                    data = self._plain(entry, size, sender)
                result.append((data, sender))
                if len(result) >= max_count or not queue:
                    break
                entry = queue.popleft()
                if entry[0] is not None:
                    self._queued_bytes -= len(entry[0])
            return result

    async def _receive(self, max_size: int | None) -> bytes:
        conflict = self._receive_conflict  # inline: see ConflictDetector
        if conflict.held:
            raise conflict.busy()
        conflict.held = True
        try:
            size = check_size(max_size)
            entry = await self._next(size)
            if entry[0] is None:
                raise self._error(entry[2], "receive", size=size) from entry[2]
            return self._plain(entry, size, self.url)
        finally:
            conflict.held = False

    async def _recvmsg(
        self, size: int, ancsize: int, *, drop_fds: bool = False
    ) -> tuple[bytes, list[int], Credentials | None, int, Any]:
        """:meth:`.._fdpass.MessageIO._recvmsg` from the queue: what
        ``receive_fds`` and ``receive_with_credentials`` take (they check
        the sizes and descriptors, closing them on any error)."""
        if self._queue is None:
            return await MessageIO._recvmsg(self, size, ancsize, drop_fds=drop_fds)
        data, address, extra = await self._next(size - 1)
        if data is None:
            raise self._error(extra, "receive_fds", size=size - 1) from extra
        if extra is None:
            return data, [], None, 0, address
        fds, credentials, error, flags = extra
        if drop_fds:
            close_all(fds)
            fds = []
            if isinstance(error, DescriptorsDropped):
                error = None
        if error is not None:  # its descriptors were closed when it was read
            raise error
        return data, fds, credentials, flags, address

    # -- closing ---------------------------------------------------------------

    async def aclose(self) -> None:
        if self._queue is not None and not self._closed:
            self._close_queue()
        await super().aclose()

    def _close_queue(self) -> None:
        """aclose's first half: reading stopped, a waiter woken (it raises
        ClosedResourceError once aclose has marked us closed), queued
        descriptors closed."""
        self._stop_reading()
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        queue = self._queue
        assert queue is not None
        while queue:
            extra = queue.popleft()[2]
            if isinstance(extra, tuple):
                close_all(extra[0])
        self._queued_bytes = 0

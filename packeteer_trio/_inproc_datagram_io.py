"""The inproc:// datagram loops, shared by both faces: mailboxes in memory.

As :mod:`._inproc_io` for streams: the ends (:mod:`._inproc`) hold the
queues, these mixins move datagrams with the face's checkpoints and park on
its event. A full receiver makes senders wait, as an AF_UNIX datagram socket
does: nothing is dropped. A datagram over ``max_size`` is dropped and
reported (OSError(EMSGSIZE)), never cut.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from ._errors import InvalidURL
from ._inproc import InprocDatagramEnd, Mailbox
from ._inproc_io import Data, Event, InprocHooks, NewWaker
from ._io import Face
from ._url import URL


class InprocDatagramIO(InprocHooks):
    """What bound and connected datagram ends share: delivery and receipt."""

    _noun = "datagram socket"
    _datagram: InprocDatagramEnd
    # The waker of our send waiting for room in someone else's mailbox, which
    # our own close must set too.
    _sending: Event | None

    def _init_datagram(self, end: InprocDatagramEnd, face: Face, new: NewWaker) -> None:
        self._init_inproc(end.url, face, new)
        self._datagram = end
        self._sending = None

    def _target(self, address: str | URL) -> Mailbox:
        url = address if isinstance(address, URL) else URL.parse(address)
        if url.scheme != "inproc":
            raise InvalidURL(
                f"{url}: an inproc:// datagram end sends to inproc:// only"
            )
        mailbox = self._datagram.namespace.mailboxes.get(url.host)
        if mailbox is None:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED,
                f"{url}: send failed: no datagram end has this name in this event loop",
            )
        return mailbox

    async def _deliver(self, mailbox: Mailbox, data: Data) -> bool:
        """Queue one datagram, waiting while the receiver's queue is full;
        return whether we waited."""
        own = self._datagram.mailbox
        waited = False
        while True:
            if self._closed:
                raise self._closed_error()
            if mailbox.closed:
                raise ConnectionRefusedError(
                    errno.ECONNREFUSED, f"{mailbox.url}: send failed: it was closed"
                )
            if mailbox.peer is not None and mailbox.peer != own.url:
                raise PermissionError(
                    errno.EPERM,
                    f"{mailbox.url}: send failed: it is connected to {mailbox.peer}",
                )
            if len(mailbox.queue) < mailbox.capacity:
                mailbox.queue.append((bytes(data), own.url))
                mailbox.wake_reader()
                return waited
            waker = self._sending = self._new_waker()
            mailbox.senders.append(waker)
            try:
                await waker.wait()
            finally:
                self._sending = None
            waited = True

    def _take(self, max_size: int | None) -> tuple[bytes, URL]:
        mailbox = self._datagram.mailbox
        data, sender = mailbox.queue.popleft()
        mailbox.wake_senders()
        if max_size is not None and len(data) > max_size:
            raise OSError(
                errno.EMSGSIZE,
                f"{self.url}: a {len(data)}-byte datagram from {sender} does not fit "
                f"max_size={max_size}; it was dropped",
            )
        return data, sender

    async def _receive_one(self, max_size: int | None) -> tuple[bytes, URL]:
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            waited = await self._wait_queued()
            item = self._take(max_size)
            if not waited:
                await self._cancel_shielded_checkpoint()
            return item

    async def _wait_queued(self) -> bool:
        mailbox, waited = self._datagram.mailbox, False
        while True:
            if self._closed:
                raise self._closed_error()
            if mailbox.queue:
                return waited
            waker = mailbox.reader = self._new_waker()
            await waker.wait()
            waited = True

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._datagram.close()
            if self._sending is not None:
                self._sending.set()
        await self._checkpoint()

    @property
    def local_address(self) -> URL:
        return self._datagram.mailbox.url


class InprocBoundIO(InprocDatagramIO):
    """send_to / receive_from and their batches, for ``open_datagram``."""

    async def send_to(self, data: Data, address: str | URL) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if not await self._deliver(self._target(address), data):
                await self._cancel_shielded_checkpoint()

    async def send_many(self, items: Iterable[tuple[Data, str | URL]]) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            waited = False
            for data, address in items:
                waited = await self._deliver(self._target(address), data) or waited
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def receive_from(self, max_size: int | None = None) -> tuple[bytes, URL]:
        return await self._receive_one(max_size)

    async def receive_many(
        self, max_count: int = 64, *, max_size: int | None = None
    ) -> list[tuple[bytes, URL]]:
        if max_count < 1:
            raise ValueError("max_count must be at least 1")
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            waited = await self._wait_queued()
            queue = self._datagram.mailbox.queue
            items = [self._take(max_size)]
            # A datagram that does not fit stays queued: the next receive
            # raises for it, and nothing already taken is lost.
            while queue and len(items) < max_count:
                if max_size is not None and len(queue[0][0]) > max_size:
                    break
                items.append(self._take(max_size))
            if not waited:
                await self._cancel_shielded_checkpoint()
            return items


class InprocConnectedIO(InprocDatagramIO):
    """send / receive to and from one peer, for ``connect_datagram``."""

    async def send(self, value: Data) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            peer = self._datagram.peer
            assert peer is not None
            if not await self._deliver(peer, value):
                await self._cancel_shielded_checkpoint()

    async def receive(self, *, max_size: int | None = None) -> bytes:
        return (await self._receive_one(max_size))[0]

    @property
    def peer_address(self) -> URL:
        peer = self._datagram.peer
        assert peer is not None
        return peer.url

"""The trio face's public types: what the verbs promise to return.

Each is an abstract base over trio's ABC of the same role, implemented by
``@final`` classes: the ones over an OS descriptor or handle
(:class:`~packeteer_trio.SocketStream`, :class:`~packeteer_trio.PipeStream`,
the Windows ``HandleStream``, and those in :mod:`._listener` and
:mod:`._datagram`) and the adapters of a user scheme's objects
(:mod:`._wrapped`), which hold what they adapt.

``_scheduler_fds()`` is the hook :mod:`packeteer_trio.scheduler` reads: the
descriptors (or Windows handles) to watch, ``(read, write)``, either None
for a side that is not there; it raises the face's closed error once closed,
and PacketeerError for an object whose readiness no descriptor shows.
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import BinaryIO

import trio

from .._buffer import Buffer
from .._url import URL

Data = bytes | bytearray | memoryview


class _OverASocket(ABC):
    """What a datagram type over one socket lets its user reach."""

    __slots__ = ()

    @property
    @abstractmethod
    def socket(self) -> socket.socket:
        """The underlying (non-blocking) socket. Don't close it behind our back."""

    @abstractmethod
    def fileno(self) -> int: ...

    @abstractmethod
    def setsockopt(self, level: int, option: int, value: int | bytes) -> None: ...

    @abstractmethod
    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes: ...

    @abstractmethod
    def _scheduler_fds(self) -> tuple[int | None, int | None]: ...


class Stream(trio.abc.HalfCloseableStream):
    """A byte stream opened by :func:`connect` or accepted by a :class:`Listener`.

    ``url`` is the address it was opened with, narrowed and resolved
    (``tcp://localhost:80`` becomes ``tcp4://127.0.0.1:80``).
    """

    __slots__ = ()
    url: URL

    @abstractmethod
    async def receive_into(self, buffer: Buffer) -> int:
        """Receive into *buffer* (a writable bytes-like); 0 means end of file."""

    @abstractmethod
    async def send_file(
        self, file: BinaryIO, offset: int = 0, count: int | None = None
    ) -> int:
        """Send *count* bytes (None: to its end) of a regular *file* from *offset*.

        Zero-copy (``os.sendfile``) where the OS allows; returns the number
        of bytes sent, fewer than *count* only if the file ended first. The
        file's position ends at ``offset`` plus that, also when cancelled or
        failing. See docs/api.md for which streams copy instead, and what a
        cancellation leaves.
        """

    @abstractmethod
    def fileno(self) -> int:
        """The descriptor (a HANDLE on Windows pipes); -1 once closed."""

    @property
    @abstractmethod
    def local_address(self) -> URL:
        """Our end's address as a URL (the stream's ``url`` for pipes)."""

    @property
    @abstractmethod
    def peer_address(self) -> URL:
        """The other end's address as a URL (the stream's ``url`` for pipes)."""

    @abstractmethod
    def _scheduler_fds(self) -> tuple[int | None, int | None]: ...


class Listener(trio.abc.Listener[Stream]):
    """Accepts :class:`Stream` connections; ``url`` is the bound address."""

    __slots__ = ()
    url: URL

    @property
    @abstractmethod
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (empty for a FIFO)."""

    @abstractmethod
    def fileno(self) -> int:
        """The (first) listening descriptor."""

    @abstractmethod
    def detach(self) -> list[socket.socket]:
        """Hand the listening sockets over to other code, open, and stop using them.

        Returns every socket the URL listens on (several for a host name
        bound in more than one family), still listening and non-blocking;
        they are the caller's from then on: we never close or wait on them
        again. The listener is closed (``accept`` raises
        :exc:`trio.ClosedResourceError`), except that ``aclose()`` still
        removes a ``local://`` socket file if it is still the one we bound:
        call it once the new owner is done with the socket. PacketeerError,
        and the listener stays open, if it has no socket (a FIFO, a Windows
        pipe, a user scheme's listener).
        """

    @abstractmethod
    def _scheduler_fds(self) -> tuple[int | None, int | None]: ...


class DatagramSocket(trio.abc.AsyncResource, _OverASocket):
    """A bound, unconnected datagram socket from :func:`open_datagram`.

    ``url`` is the bound address (``udp4://127.0.0.1:40123``): what other
    sockets see as the sender, and what they can ``send_to``.
    """

    __slots__ = ()
    url: URL

    @abstractmethod
    async def send_to(self, data: Data, address: str | URL) -> None:
        """Send one datagram to *address* (e.g. a ``sender`` from receive_from)."""

    @abstractmethod
    async def send_many(self, items: Iterable[tuple[Data, str | URL]]) -> None:
        """Send every ``(data, address)`` behind one checkpoint.

        Waits only while the socket buffer is full. If it raises (or is
        cancelled while waiting for room), the datagrams before the failing
        one have been sent and the rest have not. A datagram the kernel has
        no memory for (ENOBUFS, ENOMEM) even after the retries is dropped,
        not raised.
        """

    @abstractmethod
    async def receive_from(self, max_size: int | None = None) -> tuple[bytes, URL]:
        """Receive one datagram: ``(data, sender)``; *sender* works for send_to."""

    @abstractmethod
    async def receive_many(
        self, max_count: int = 64, *, max_size: int | None = None
    ) -> list[tuple[bytes, URL]]:
        """Wait for one datagram, then take every one already queued.

        Returns up to *max_count* ``(data, sender)`` pairs behind a single
        checkpoint. An error met after the first datagram (a truncated one,
        say) is raised by the next receive, so nothing taken is lost.
        """


class DatagramChannel(trio.abc.Channel[bytes], _OverASocket):
    """A connected datagram socket from :func:`connect_datagram`.

    ``send``/``receive`` move one datagram each; ``url`` is the peer. A peer
    that is not there shows as ConnectionRefusedError from a later send or
    receive (ICMP port unreachable); the channel stays usable.
    """

    __slots__ = ()
    url: URL

    @abstractmethod
    async def send(self, value: Data) -> None:
        """Send one datagram."""

    @abstractmethod
    async def receive(self, *, max_size: int | None = None) -> bytes:
        """Receive one datagram; OSError(EMSGSIZE) if it is over *max_size*.

        *max_size* is keyword-only: the ABCs' ``receive()`` takes no argument.
        """

    @property
    @abstractmethod
    def local_address(self) -> URL:
        """Our end's address as a URL."""

    @property
    @abstractmethod
    def peer_address(self) -> URL:
        """The peer's address as a URL."""

"""inproc:// ends: what ``inproc://NAME`` hands to a face instead of a descriptor.

Everything lives in memory, in one event loop: a stream is two
:class:`BytePipe`\\ s (one per direction, each bounded like a socket buffer),
a listener is a queue of connections not yet accepted, a datagram end a
bounded :class:`Mailbox`. These are plain data with non-blocking operations;
waiting is the face's. A task that must wait parks a *waker* (the face's
event: ``trio.Event``, ``anyio.Event``) in the slot it waits on, and whoever
changes what it waits for sets it. A waker is used once; a stale one (its
task was cancelled) is harmless to set.

The names of one event loop are a :class:`Namespace` (found by
:mod:`.schemes.inproc`); stream names and datagram names are apart, as TCP
and UDP ports are.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Protocol, TypeVar, final

from ._url import URL, Query

# Bytes buffered per direction before send_all waits for the reader, and
# datagrams queued per receiver before a sender waits: like a socket's buffer.
STREAM_BUFFER = 256 * 1024
DATAGRAM_QUEUE = 256
T = TypeVar("T")
AUTO_PREFIX = "~"  # names picked for unnamed ends: inproc://~1, inproc://~2, …


class Waker(Protocol):
    def set(self) -> None: ...


@final
class BytePipe:
    """One direction of a stream: the bytes in flight and who waits on them."""

    __slots__ = ("buffer", "capacity", "eof", "reader", "reader_gone", "writer")

    def __init__(self, capacity: int = STREAM_BUFFER) -> None:
        self.buffer: bytearray = bytearray()
        self.capacity: int = capacity
        self.eof: bool = False  # the writer sent EOF (or closed): read to the end
        self.reader_gone: bool = False  # the reader closed: sending is broken
        self.reader: Waker | None = None
        self.writer: Waker | None = None

    def wake_reader(self) -> None:
        waker, self.reader = self.reader, None
        if waker is not None:
            waker.set()

    def wake_writer(self) -> None:
        waker, self.writer = self.writer, None
        if waker is not None:
            waker.set()


@final
@dataclasses.dataclass(eq=False)
class InprocStreamEnd:
    """One end of an in-process stream: ``incoming`` is read, ``outgoing`` written."""

    url: URL
    local: URL
    peer: URL
    incoming: BytePipe
    outgoing: BytePipe

    def close(self) -> None:
        """Hang up: the peer reads EOF and its sends break; every task
        waiting on either pipe (ours or the peer's) is woken to see it."""
        outgoing, incoming = self.outgoing, self.incoming
        outgoing.eof = True
        incoming.reader_gone = True
        incoming.buffer.clear()
        for wake in (
            outgoing.wake_reader,
            outgoing.wake_writer,
            incoming.wake_reader,
            incoming.wake_writer,
        ):
            wake()


def stream_pair(url: URL, client: URL, server: URL) -> tuple[InprocStreamEnd, ...]:
    """The client's and the server's end of a new connection to *url*."""
    up, down = BytePipe(), BytePipe()
    return (
        InprocStreamEnd(url, local=client, peer=server, incoming=down, outgoing=up),
        InprocStreamEnd(url, local=server, peer=client, incoming=up, outgoing=down),
    )


@final
class InprocListenerEnd:
    """A listening name: connections queue here until accepted (*backlog*)."""

    def __init__(self, url: URL, namespace: Namespace, backlog: int) -> None:
        self.url = url
        self.namespace = namespace
        self.backlog = backlog
        self.pending: collections.deque[InprocStreamEnd] = collections.deque()
        self.waker: Waker | None = None
        self.closed: bool = False

    def offer(self, end: InprocStreamEnd) -> bool:
        """Queue a connection for accept(); False if the backlog is full."""
        if len(self.pending) >= self.backlog:
            return False
        self.pending.append(end)
        waker, self.waker = self.waker, None
        if waker is not None:
            waker.set()
        return True

    def try_accept(self) -> InprocStreamEnd | None:
        return self.pending.popleft() if self.pending else None

    def close(self) -> None:
        """Give the name up; connections never accepted see their peer hang up."""
        if self.closed:
            return
        self.closed = True
        self.namespace.release(self.namespace.listeners, self.url.host, self)
        while self.pending:
            self.pending.popleft().close()
        waker, self.waker = self.waker, None
        if waker is not None:
            waker.set()


@final
class Mailbox:
    """A datagram end's receive queue, under its name (``url``).

    ``peer`` is set on a connected end: only its datagrams are taken.
    """

    def __init__(self, url: URL, capacity: int = DATAGRAM_QUEUE) -> None:
        self.url = url
        self.capacity = capacity
        self.queue: collections.deque[tuple[bytes, URL]] = collections.deque()
        self.reader: Waker | None = None
        self.senders: list[Waker] = []  # senders waiting for room
        self.peer: URL | None = None
        self.closed = False

    def wake_reader(self) -> None:
        waker, self.reader = self.reader, None
        if waker is not None:
            waker.set()

    def wake_senders(self) -> None:
        senders, self.senders = self.senders, []
        for waker in senders:
            waker.set()


@final
@dataclasses.dataclass(eq=False)
class InprocDatagramEnd:
    """A datagram end: its own mailbox, and the peer's when connected."""

    mailbox: Mailbox
    namespace: Namespace
    peer: Mailbox | None = None

    @property
    def url(self) -> URL:
        """The peer's name when connected, else our own (as for sockets)."""
        return (self.peer or self.mailbox).url

    def close(self) -> None:
        mailbox = self.mailbox
        if mailbox.closed:
            return
        mailbox.closed = True
        mailbox.queue.clear()
        self.namespace.release(self.namespace.mailboxes, mailbox.url.host, mailbox)
        mailbox.wake_reader()
        mailbox.wake_senders()


@final
class Namespace:
    """The inproc names of one event loop."""

    def __init__(self) -> None:
        self.listeners: dict[str, InprocListenerEnd] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        self._last = 0

    def auto_name(self) -> str:
        self._last += 1
        return f"{AUTO_PREFIX}{self._last}"

    @staticmethod
    def release(table: dict[str, T], name: str, owner: T) -> None:
        """Free *name*, if *owner* still holds it."""
        if table.get(name) is owner:
            del table[name]


DATAGRAM_QUERY = Query({"behaviour": "datagram"})

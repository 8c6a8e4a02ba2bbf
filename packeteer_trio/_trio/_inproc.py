"""The trio face of inproc://: streams, a listener and datagram ends in memory.

The loops are :mod:`.._inproc_io`'s with trio's primitives (:data:`._face.TRIO`)
and ``trio.Event`` to park on. There is no descriptor behind any of them:
``fileno()``, ``socket`` and the socket options raise
:class:`io.UnsupportedOperation` (as an in-memory file's ``fileno()`` does),
``sockets`` is empty, and the scheduler refuses them with PacketeerError.
"""

from __future__ import annotations

import socket
from typing import BinaryIO, NoReturn, final

import trio

from .._inproc import InprocDatagramEnd, InprocListenerEnd, InprocStreamEnd
from .._inproc_datagram_io import InprocBoundIO, InprocConnectedIO
from .._inproc_io import (
    InprocListenerIO,
    InprocStreamIO,
    no_descriptor,
    no_scheduler_fds,
)
from .._sendfile import copy_file
from .._url import URL
from ._abc import DatagramChannel, DatagramSocket, Listener, Stream
from ._face import TRIO


@final
class InprocStream(InprocStreamIO, Stream):
    """One end of an ``inproc://NAME`` connection: a stream through memory.

    Bounded like a socket (``send_all`` waits while 256 KiB are unread),
    half-closeable, ``local_address``/``peer_address`` as URLs (the
    connecting end is named ``inproc://~N``).
    """

    def __init__(self, end: InprocStreamEnd) -> None:
        self._init_stream(end, TRIO, trio.Event)

    async def send_file(
        self, file: BinaryIO, offset: int = 0, count: int | None = None
    ) -> int:
        """The read + ``send_all`` loop: no descriptor to ``sendfile`` to."""
        return await copy_file(
            self.send_all, trio.lowlevel.checkpoint, file, offset, count, self.url
        )

    def fileno(self) -> NoReturn:
        """Always raises :class:`io.UnsupportedOperation`: no descriptor."""
        raise no_descriptor(self.url)

    def _scheduler_fds(self) -> NoReturn:
        raise no_scheduler_fds(self.url)


@final
class InprocListener(InprocListenerIO, Listener):
    """Accepts :class:`InprocStream` connections on ``inproc://NAME``."""

    def __init__(self, end: InprocListenerEnd) -> None:
        self._init_listener(end, TRIO, trio.Event)

    async def accept(self) -> InprocStream:
        with self._conflict:
            return InprocStream(await self._accept_end())

    @property
    def sockets(self) -> list[socket.socket]:
        """Always empty: nothing here is a socket."""
        return []

    def fileno(self) -> NoReturn:
        """Always raises :class:`io.UnsupportedOperation`: no descriptor."""
        raise no_descriptor(self.url)

    def _scheduler_fds(self) -> NoReturn:
        raise no_scheduler_fds(self.url)


class _NoSocket:
    url: URL

    @property
    def socket(self) -> NoReturn:
        """Always raises :class:`io.UnsupportedOperation`: no socket."""
        raise no_descriptor(self.url, "socket")

    def fileno(self) -> NoReturn:
        """Always raises :class:`io.UnsupportedOperation`: no descriptor."""
        raise no_descriptor(self.url)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> NoReturn:
        raise no_descriptor(self.url, "socket options")

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> NoReturn:
        raise no_descriptor(self.url, "socket options")

    def _scheduler_fds(self) -> NoReturn:
        raise no_scheduler_fds(self.url)


@final
class InprocDatagramSocket(_NoSocket, InprocBoundIO, DatagramSocket):
    """A named datagram end from ``open_datagram("inproc://NAME?behaviour=datagram")``.

    Senders are URLs (``inproc://~3?behaviour=datagram``) to pass back to
    ``send_to``. A full receiver (256 datagrams queued) makes senders
    wait, as an AF_UNIX datagram socket does; nothing is dropped.
    """

    def __init__(self, end: InprocDatagramEnd) -> None:
        self._init_datagram(end, TRIO, trio.Event)


@final
class InprocDatagramChannel(_NoSocket, InprocConnectedIO, DatagramChannel):
    """A datagram channel to one inproc name, from ``connect_datagram``."""

    def __init__(self, end: InprocDatagramEnd) -> None:
        self._init_datagram(end, TRIO, trio.Event)

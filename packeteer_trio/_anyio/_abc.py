"""The anyio face's public types: what its verbs promise to return.

anyio's own ABCs already say what a stream can do (``SocketStream`` has the
socket attributes, ``UNIXSocketStream`` adds ``send_fds``/``receive_fds``);
these add what every packeteer object of the kind has, its URL first, so the
verbs can promise more than a bare :class:`anyio.abc.ByteStream`. Each is
abstract, as the trio face's types are: the ``@final`` classes over
descriptors (``OS*``, and those in :mod:`._stream`) and those of
``inproc://`` derive from it, so ``isinstance`` narrows to what only one
kind has (``isinstance(stream, anyio.abc.UNIXSocketStream)`` narrows a
:class:`Stream` to both for a type checker).
"""

from __future__ import annotations

import socket
from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

import anyio.abc

from .._url import URL

__all__ = ["DatagramChannel", "DatagramSocket", "Listener", "Stream"]

Data = bytes | bytearray | memoryview


class Stream(anyio.abc.ByteStream):
    """A byte stream from :func:`connect` or a :class:`Listener`, with its URL.

    Sockets are also :class:`anyio.abc.SocketStream` (AF_UNIX ones
    :class:`anyio.abc.UNIXSocketStream`); pipes are only this.
    """

    __slots__ = ()
    #: The URL it was opened with, narrowed and resolved
    #: (``tcp://localhost:80`` becomes ``tcp4://127.0.0.1:80``); also the
    #: typed attribute :attr:`PacketeerAttribute.url`.
    url: URL


class Listener(anyio.abc.Listener[Stream]):
    """Accepts byte streams on a URL (from :func:`listen`); ``url`` is the
    bound address."""

    __slots__ = ()
    url: URL

    @abstractmethod
    async def accept(self) -> Stream:
        """Wait for the next connection and return its stream."""

    @abstractmethod
    async def serve(
        self,
        handler: Callable[[Stream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        """Accept connections forever, running ``handler(stream)`` for each."""

    @property
    @abstractmethod
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (none for a FIFO or ``inproc://``)."""

    @abstractmethod
    def detach(self) -> list[socket.socket]:
        """Hand the listening sockets over; ``accept`` then raises
        :exc:`anyio.ClosedResourceError`."""


class DatagramSocket(anyio.abc.UnreliableObjectStream[tuple[bytes, URL]]):
    """A bound, unconnected datagram socket (from :func:`open_datagram`):
    items are ``(data, address)``; ``url`` is the bound address."""

    __slots__ = ()
    url: URL

    @abstractmethod
    async def send(self, item: tuple[Data, str | URL]) -> None:
        """Send one datagram: ``item`` is ``(data, address)``."""

    @abstractmethod
    async def receive(self, *, max_size: int | None = None) -> tuple[bytes, URL]:
        """Receive one datagram as ``(data, sender)``; *sender* can be sent to."""

    @abstractmethod
    async def send_to(self, data: Data, address: str | URL) -> None:
        """Send one datagram to *address*."""

    @abstractmethod
    async def send_many(self, items: Iterable[tuple[Data, str | URL]]) -> None:
        """Send every ``(data, address)`` behind one checkpoint."""

    @abstractmethod
    async def receive_from(self, max_size: int | None = None) -> tuple[bytes, URL]:
        """Receive one datagram: ``(data, sender)``."""

    @abstractmethod
    async def receive_many(
        self, max_count: int = 64, *, max_size: int | None = None
    ) -> list[tuple[bytes, URL]]:
        """Wait for one datagram, then take every one already queued."""


class DatagramChannel(anyio.abc.UnreliableObjectStream[bytes]):
    """A connected datagram socket (from :func:`connect_datagram`): one
    datagram per item; ``url`` is the peer."""

    __slots__ = ()
    url: URL

    @abstractmethod
    async def send(self, item: Data) -> None:
        """Send one datagram."""

    @abstractmethod
    async def receive(self, *, max_size: int | None = None) -> bytes:
        """Receive one datagram; OSError(EMSGSIZE) if it is over *max_size*."""

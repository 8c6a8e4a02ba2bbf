"""The anyio face of inproc://: anyio's ABCs over the in-memory loops.

The loops are :mod:`.._inproc_io`'s, with the backend's checkpoints, anyio's
exceptions, and an event to park on (trio's own under anyio's trio backend,
``anyio.Event`` under asyncio). A stream is an :class:`anyio.abc.ByteStream`
(no socket behind it, so no :class:`anyio.abc.SocketAttribute`); the
datagram ends are :class:`anyio.abc.UnreliableObjectStream`\\ s with the same
items as :class:`.DatagramSocket` and :class:`.DatagramChannel`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from typing import Any, NoReturn, final

import anyio
import anyio.abc
import trio

from .._inproc import InprocDatagramEnd, InprocListenerEnd, InprocStreamEnd
from .._inproc_datagram_io import InprocBoundIO, InprocConnectedIO
from .._inproc_io import (
    Data,
    InprocListenerIO,
    InprocStreamIO,
    NewWaker,
    no_descriptor,
)
from .._url import URL
from ._abc import DatagramChannel, DatagramSocket, Listener, Stream
from ._backend import Backend, PacketeerAttribute, current_backend


def _face() -> tuple[Backend, NewWaker]:
    backend = current_backend()
    return backend, (trio.Event if backend.is_trio else anyio.Event)


def _url_attribute(url: URL) -> Mapping[Any, Callable[[], Any]]:
    return {PacketeerAttribute.url: lambda: url}


@final
class InprocStream(InprocStreamIO, Stream):
    """One end of an ``inproc://NAME`` connection, as an anyio byte stream."""

    def __init__(self, end: InprocStreamEnd) -> None:
        self._init_stream(end, *_face())

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.receive_some(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data

    def send(self, item: bytes) -> Coroutine[Any, Any, None]:
        return self.send_all(item)  # one coroutine per call, as PipeStream

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return _url_attribute(self.url)


@final
class InprocListener(InprocListenerIO, Listener):
    """Accepts :class:`InprocStream` connections on ``inproc://NAME``."""

    def __init__(self, end: InprocListenerEnd) -> None:
        self._init_listener(end, *_face())

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return _url_attribute(self.url)

    @property
    def sockets(self) -> list[socket.socket]:
        """Always empty: nothing here is a socket."""
        return []

    def fileno(self) -> NoReturn:
        """Always raises :class:`io.UnsupportedOperation`: no descriptor."""
        raise no_descriptor(self.url)

    async def accept(self) -> Stream:
        """Wait for the next connection and return its stream."""
        with self._conflict:
            return InprocStream(await self._accept_end())

    async def serve(
        self,
        handler: Callable[[Stream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        """Accept connections forever, running ``handler(stream)`` for each
        in *task_group* (else in a task group of our own)."""
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            while True:
                task_group.start_soon(handler, await self.accept())


Packet = tuple[bytes, URL]


@final
class InprocDatagramSocket(InprocBoundIO, DatagramSocket):
    """A named inproc datagram end: items are ``(data, address)``, as for
    :class:`.DatagramSocket`; a full receiver makes senders wait."""

    def __init__(self, end: InprocDatagramEnd) -> None:
        self._init_datagram(end, *_face())

    def send(self, item: tuple[Data, str | URL]) -> Coroutine[Any, Any, None]:
        """Send one datagram: ``item`` is ``(data, address)``."""
        return self.send_to(*item)

    def receive(
        self, *, max_size: int | None = None
    ) -> Coroutine[Any, Any, tuple[bytes, URL]]:
        """Receive one datagram as ``(data, sender)``; one over *max_size*
        (keyword-only; no limit by default) is dropped with OSError(EMSGSIZE)."""
        return self.receive_from(max_size)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return _url_attribute(self.url)


@final
class InprocDatagramChannel(InprocConnectedIO, DatagramChannel):
    """A datagram channel to one inproc name: ``send(data)``/``receive()``."""

    def __init__(self, end: InprocDatagramEnd) -> None:
        self._init_datagram(end, *_face())

    def send(self, item: Data) -> Coroutine[Any, Any, None]:
        """Send one datagram."""
        return InprocConnectedIO.send(self, item)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return _url_attribute(self.url)

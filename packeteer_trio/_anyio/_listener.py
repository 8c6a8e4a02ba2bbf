"""The anyio face of listeners: one generic Listener over any ListenerEndpoint.

Accepting goes through the endpoint (``try_accept`` + ``wait_acceptable``),
so sockets of several families, and FIFOs (which have no socket at all),
are served alike; each accepted endpoint becomes a stream via
:func:`wrap_stream`, exactly as ``connect`` does.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc

from .._endpoints import (
    ACCEPT_CAPACITY_ERRNOS,
    ACCEPT_RETRY_PAUSE,
    IGNORABLE_ACCEPT_ERRNOS,
    AcceptBurst,
    ListenerEndpoint,
    SocketListenerEndpoint,
)
from .._errors import PacketeerError
from .._io import ConflictDetector
from .._url import URL
from ._backend import PacketeerAttribute, current_backend, socket_attributes
from ._stream import wrap_stream


class Listener(anyio.abc.Listener[anyio.abc.ByteStream]):
    """Accepts byte streams on a URL; ``url`` is the bound address.

    Socket listeners provide :class:`anyio.abc.SocketAttribute`'s ``family``,
    ``local_address``, ``local_port`` and ``raw_socket`` (of the first
    socket, when a name bound several families).
    """

    def __init__(self, endpoint: ListenerEndpoint) -> None:
        self._endpoint = endpoint
        self._url = endpoint.url
        self._closed = False
        self._conflict = ConflictDetector("accepting from", anyio.BusyResourceError)
        backend = current_backend()
        self._checkpoint = backend.checkpoint
        self._checkpoint_if_cancelled = backend.checkpoint_if_cancelled
        self._cancel_shielded_checkpoint = backend.cancel_shielded_checkpoint
        self._wait_readable = backend.wait_readable
        self._notify_closing = backend.notify_closing

    @property
    def url(self) -> URL:
        """The bound address, with the real port (``tcp4://127.0.0.1:40123``)."""
        return self._url

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (empty for a FIFO)."""
        if isinstance(self._endpoint, SocketListenerEndpoint):
            return list(self._endpoint.socks)
        return []

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        socks = self.sockets
        if socks:
            return socket_attributes(socks[0], self._url)
        return {PacketeerAttribute.url: lambda: self._url}

    async def accept(self) -> anyio.abc.ByteStream:
        """Wait for the next connection and return its stream."""
        with self._conflict:
            await self._checkpoint_if_cancelled()
            waited = False
            while True:
                if self._closed:
                    raise anyio.ClosedResourceError(f"{self._url}: listener was closed")
                endpoint = self._endpoint.try_accept()
                if endpoint is not None:
                    break
                await self._endpoint.wait_acceptable(self._wait_readable)
                waited = True
            stream = await wrap_stream(endpoint)
            if not waited:
                await self._cancel_shielded_checkpoint()
            return stream

    async def serve(
        self,
        handler: Callable[[anyio.abc.ByteStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        """Accept connections forever, running ``handler(stream)`` for each.

        The handlers run in *task_group* (else in a task group of our own);
        a handler owns its stream and should close it. An accept error that
        concerns only one connection (those trio's listeners ignore:
        ECONNABORTED, EPROTO, ECONNRESET, …) drops it; running out of
        descriptors pauses accepting briefly instead of ending the server,
        logged once per burst, as the trio face's ``serve`` does.
        """
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            burst = AcceptBurst()
            while True:
                try:
                    stream = await self.accept()
                except OSError as exc:
                    if exc.errno in IGNORABLE_ACCEPT_ERRNOS:
                        await self._checkpoint()  # that connection only: next
                        continue
                    if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise
                    burst.failed(self._url, exc)
                    await anyio.sleep(ACCEPT_RETRY_PAUSE)
                    continue
                burst.succeeded(self._url)
                task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            for fd in self._endpoint.fds():
                self._notify_closing(fd)
            self._endpoint.close()
        await self._checkpoint()

    def fileno(self) -> int:
        """The (first) listening descriptor."""
        fds = self._endpoint.fds()
        if not fds:
            raise PacketeerError(f"{self._url}: listener has no descriptor")
        return fds[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._url}{' closed' if self._closed else ''}>"

"""The anyio face of listeners: one generic Listener over any ListenerEndpoint.

Accepting goes through the endpoint (``try_accept`` + ``wait_acceptable``),
so sockets of several families, and FIFOs (which have no socket at all),
are served alike; each accepted endpoint becomes a stream via
:func:`wrap_stream`, exactly as ``connect`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, final

import anyio
import anyio.abc

from .._accept import (
    ACCEPT_CAPACITY_ERRNOS,
    ACCEPT_RETRY_PAUSE,
    IGNORABLE_ACCEPT_ERRNOS,
    AcceptBurst,
)
from .._endpoints import ListenerEndpoint
from .._fdio import ListenerIO
from ._abc import Listener, Stream
from ._backend import PacketeerAttribute, current_backend, socket_attributes
from ._stream import wrap_stream


@final
class OSListener(ListenerIO, Listener):
    """Accepts byte streams on a URL; ``url`` is the bound address.

    Socket listeners provide :class:`anyio.abc.SocketAttribute`'s ``family``,
    ``local_address``, ``local_port`` and ``raw_socket`` (of the first
    socket, when a name bound several families).

    ``detach()`` hands the listening sockets over, as the trio face's
    :meth:`packeteer_trio.Listener.detach` (``accept`` then raises
    :exc:`anyio.ClosedResourceError`; ``aclose`` still removes a
    ``local://`` socket file that is still ours).
    """

    def __init__(self, endpoint: ListenerEndpoint) -> None:
        self._init_listener(endpoint, current_backend(), "accepting from")

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        socks = self.sockets
        if socks:
            return socket_attributes(socks[0], self.url)
        return {PacketeerAttribute.url: lambda: self.url}

    async def accept(self) -> Stream:
        """Wait for the next connection and return its stream."""
        with self._conflict:
            endpoint, waited = await self._accept_endpoint()
            stream = await wrap_stream(endpoint)
            if not waited:
                await self._cancel_shielded_checkpoint()
            return stream

    async def serve(
        self,
        handler: Callable[[Stream], Any],
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
                    burst.failed(self.url, exc)
                    await anyio.sleep(ACCEPT_RETRY_PAUSE)
                    continue
                burst.succeeded(self.url)
                task_group.start_soon(handler, stream)

"""The trio face's listener over a raw listener endpoint (sockets, a FIFO, a
Windows pipe name): the accept loop of :mod:`.._fdio`, trio's primitives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import final

import trio
from trio.lowlevel import wait_readable

from .._endpoints import ListenerEndpoint
from .._fdio import ListenerIO
from ._abc import Listener, Stream
from ._face import READ, TRIO
from ._stream import stream_from_endpoint


@final
class OSListener(ListenerIO, Listener):
    """Accepts :class:`Stream` connections on what a built-in scheme listens
    on; ``url`` is the bound address."""

    def __init__(self, endpoint: ListenerEndpoint) -> None:
        self._init_listener(
            endpoint, TRIO, f"{endpoint.url}: another task is already accepting"
        )

    async def accept(self) -> Stream:
        with self._conflict:
            endpoint, waited = await self._accept_endpoint()
            stream = stream_from_endpoint(endpoint)
            if not waited:
                await self._cancel_shielded_checkpoint()
            return stream

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._closed:
            raise self._closed_error()
        fds = self._endpoint.fds()
        # Without descriptors (a Windows pipe listener) the scheduler waits
        # through _scheduler_wait; it needs only a key for the wait.
        return (fds[0] if fds else id(self._endpoint)), None

    @property
    def _scheduler_wait(self) -> Callable[[bool], Awaitable[int]] | None:
        """The scheduler's wait for a listener without descriptors: the
        endpoint's own (``ConnectNamedPipe`` for Windows pipes); None (trio's
        ``wait_readable``) for every other listener."""
        return None if self._endpoint.fds() else self._wait_acceptable

    async def _wait_acceptable(self, read: bool) -> int:
        if not self._closed:
            await self._endpoint.wait_acceptable(wait_readable)
        if self._closed:
            raise trio.ClosedResourceError(f"{self.url}: listener was closed")
        return READ  # a connection is waiting

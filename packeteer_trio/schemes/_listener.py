"""The listener endpoint of the socket schemes (tcp, local, fd): one or more
listening sockets, accepted from in turn, waited on together."""

from __future__ import annotations

import socket
from collections.abc import Callable

import anyio

from .._accept import IGNORABLE_ACCEPT_ERRNOS
from .._endpoints import ListenerEndpoint, StreamEndpoint, WaitFd
from .._errors import with_url
from .._url import URL


class SocketListenerEndpoint(ListenerEndpoint):
    """One or more listening sockets (several for a name with many families).

    Every accepted stream gets the listener's ``url``; ``configure`` sets
    per-connection options (TCP_NODELAY). ``on_close`` runs once, at close,
    detached or not (local:// removes its socket file, if still ours);
    ``on_detach``, if given, runs instead of it when the sockets are handed
    over (fd:// lets go of its descriptors without restoring their mode).
    """

    def __init__(
        self,
        socks: list[socket.socket],
        url: URL,
        *,
        configure: Callable[[socket.socket], None] | None = None,
        on_close: Callable[[], None] | None = None,
        on_detach: Callable[[], None] | None = None,
    ) -> None:
        self.socks = socks
        self.url = url
        self._configure = configure
        self._on_close = on_close
        self._on_detach = on_detach
        self._next = 0

    def fds(self) -> list[int]:
        return [sock.fileno() for sock in self.socks if sock.fileno() >= 0]

    def sockets(self) -> list[socket.socket]:
        return list(self.socks)

    def try_accept(self) -> StreamEndpoint | None:
        count = len(self.socks)
        for offset in range(count):
            # Start after the socket that served last time, so one busy family
            # cannot starve the others.
            sock = self.socks[(self._next + offset) % count]
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in IGNORABLE_ACCEPT_ERRNOS:
                    continue
                raise with_url(exc, self.url, "accept") from exc
            self._next = (self._next + offset + 1) % count
            try:
                conn.setblocking(False)
                if self._configure is not None:
                    self._configure(conn)
            except BaseException:
                conn.close()
                raise
            return StreamEndpoint(url=self.url, sock=conn)
        return None

    async def wait_acceptable(self, wait_readable: WaitFd) -> None:
        fds = self.fds()
        if len(fds) == 1:
            await wait_readable(fds[0])
            return
        if not fds:
            await wait_readable(-1)  # let the face raise its "closed" error
        failures: list[BaseException] = []

        async with anyio.create_task_group() as group:

            async def wait_one(fd: int) -> None:
                try:
                    await wait_readable(fd)
                except Exception as exc:
                    failures.append(exc)
                group.cancel_scope.cancel()

            for fd in fds:
                group.start_soon(wait_one, fd)
        if failures:
            raise failures[0]

    def detach(self) -> list[socket.socket]:
        socks, self.socks = self.socks, []
        if self._on_detach is not None:
            on_detach, self._on_detach, self._on_close = self._on_detach, None, None
            on_detach()
        return socks

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

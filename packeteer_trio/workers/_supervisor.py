"""The supervisor: N worker processes of one server, restarted when they die."""

from __future__ import annotations

import functools
import logging
import math
import sys
from collections.abc import Sequence
from typing import final

import trio

import packeteer_trio as pt

from ._process import Argument, Target, Worker, describe_status, spawn, target_spec

log = logging.getLogger("packeteer_trio.workers")

#: The name of the shared sockets in the workers (``fd://listen/packeteer``).
SHARED_NAME = "packeteer"
_INET = frozenset({"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"})
_UDP = frozenset({"udp", "udp4", "udp6"})


class WorkerError(pt.PacketeerError):
    """A worker failed before the group was up (it exited before it served)."""


@final
class Supervisor:
    """What :func:`run` passes to ``task_status.started()``: where the workers
    serve, and which processes they are right now."""

    def __init__(self, count: int) -> None:
        #: Where the workers serve: the shared socket's address, or what the
        #: first worker reported (with ``?reuseport=1``).
        self.urls: list[pt.URL] = []
        #: How many times a worker was started again after it ended.
        self.restarts = 0
        self._workers: list[Worker | None] = [None] * count

    @property
    def pids(self) -> list[int | None]:
        """Each worker's process id; None while one is being restarted."""
        return [None if worker is None else worker.pid for worker in self._workers]

    def __repr__(self) -> str:
        shown = ", ".join(str(url) for url in self.urls)
        return f"<Supervisor of {len(self._workers)} workers on {shown}>"


async def run(
    target: Target | str,
    url: str | pt.URL,
    workers: int,
    *,
    args: Sequence[Argument] = (),
    backlog: int | None = None,
    restart_delay: float = 0.1,
    max_restart_delay: float = 10.0,
    stop_timeout: float = 5.0,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *url* from *workers* processes, each running
    ``await target(url, *args, task_status=...)``; restart any that ends.

    The URL chooses the route. With ``?reuseport=1`` (tcp, udp) every worker
    binds its own socket to the address and the kernel spreads the load; port
    0 is chosen by the first worker and then used by all. Otherwise this
    process binds the URL once (``listen``, or ``open_datagram`` for a
    datagram URL) and every worker gets that socket, as systemd passes one:
    its *url* is ``fd://listen/packeteer``. *target* is a function at the top
    level of a module (or of the main script), or ``"module:function"``;
    *args* cross as JSON.

    Returns never; cancel it (Ctrl-C) to stop: every worker gets SIGTERM,
    SIGKILL after *stop_timeout* seconds, and is reaped before this returns.
    A worker that ends is logged (logger ``packeteer_trio.workers``) and
    started again after *restart_delay* seconds, doubling up to
    *max_restart_delay* while it keeps ending sooner than that after its
    start. One that ends before the group is first up raises
    :class:`WorkerError`. ``task_status.started()`` gets a
    :class:`Supervisor` once every worker serves. POSIX only.
    """
    if sys.platform == "win32":
        raise pt.PacketeerError(
            "worker processes need POSIX descriptor passing; on Windows run one "
            "server process per port"
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}: need a whole number >= 1")
    for name, value in (
        ("restart_delay", restart_delay),
        ("stop_timeout", stop_timeout),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value!r}: need a finite number >= 0")
    if not max_restart_delay >= restart_delay:
        raise ValueError("max_restart_delay must be >= restart_delay")
    url = pt.URL.parse(url)
    spec: dict[str, object] = {
        "target": target_spec(target),
        "args": list(args),
        "name": SHARED_NAME,
        "path": list(sys.path),
    }
    supervisor = Supervisor(workers)
    group = _Group(supervisor, spec, restart_delay, max_restart_delay, stop_timeout)
    if url.query.get("reuseport") == "1":
        if url.scheme not in _INET:
            raise pt.InvalidURL(
                f"{url}: reuseport=1 is for tcp:// and udp://; the workers of "
                f"{url.scheme}:// share one socket: leave the option out"
            )
        await group.run(url, [], task_status)
        return
    datagram = url.scheme in _UDP or url.query.get("behaviour") in ("datagram", "dgram")
    shared: pt.Listener | pt.DatagramSocket
    if datagram:
        shared = await pt.open_datagram(url)
        fds = [shared.socket.fileno()]
        behaviour = "?behaviour=datagram"
    else:
        shared = await pt.listen(url, backlog=backlog)
        fds = [sock.fileno() for sock in shared.sockets]
        behaviour = ""
    async with shared:
        if not fds:
            raise pt.InvalidURL(f"{url}: has no socket that worker processes can share")
        supervisor.urls = [shared.url]
        worker_url = pt.URL.parse(f"fd://listen/{SHARED_NAME}{behaviour}")
        await group.run(worker_url, fds, task_status)


class _Group:
    def __init__(
        self,
        supervisor: Supervisor,
        spec: dict[str, object],
        restart_delay: float,
        max_restart_delay: float,
        stop_timeout: float,
    ) -> None:
        self.supervisor = supervisor
        self.spec = spec
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self.stop_timeout = stop_timeout
        self.up = False  # every worker has served once: from now on, restart

    async def run(
        self,
        url: pt.URL,
        fds: list[int],
        task_status: trio.TaskStatus[Supervisor],
    ) -> None:
        try:
            await self._run(url, fds, task_status)
        except BaseException as exc:
            # A worker that failed to start cancelled its siblings: say that
            # one failure, not the group of it and their cancellations.
            leaves = _leaves(exc)
            failed = [leaf for leaf in leaves if isinstance(leaf, WorkerError)]
            if failed and all(isinstance(leaf, _STARTING) for leaf in leaves):
                raise failed[0] from None
            raise

    async def _run(
        self,
        url: pt.URL,
        fds: list[int],
        task_status: trio.TaskStatus[Supervisor],
    ) -> None:
        count = len(self.supervisor.pids)
        async with trio.open_nursery() as nursery:
            first = 0
            if url.scheme in _INET and not url.port:
                # Port 0 with reuseport: the first worker picks the port and
                # the others bind that one.
                reported = await nursery.start(self.keep_running, 0, url, fds)
                port = pt.URL.parse(reported[0]).port if reported else None
                if port:
                    url = url.replace(port=port)
                first = 1
            async with trio.open_nursery() as starting:  # the rest at once
                for index in range(first, count):
                    starting.start_soon(
                        functools.partial(
                            nursery.start, self.keep_running, index, url, fds
                        )
                    )
            self.up = True
            pids = ", ".join(str(pid) for pid in self.supervisor.pids)
            log.debug(
                "%d workers serving %s: pid %s", count, self.supervisor.urls[0], pids
            )
            task_status.started(self.supervisor)

    async def keep_running(
        self,
        index: int,
        url: pt.URL,
        fds: list[int],
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        spec = {**self.spec, "url": str(url)}
        delay = self.restart_delay
        while True:
            served_from: float | None = None
            try:
                worker = spawn(index, spec, fds)
            except OSError as exc:  # EAGAIN, EMFILE, ENOMEM: no process now
                what = f"worker {index} could not be started ({exc})"
            else:
                self.supervisor._workers[index] = worker
                try:
                    reported = await worker.ready()
                    if reported is not None:
                        if not self.supervisor.urls:  # reuseport: the first says
                            found = [pt.URL.parse(text) for text in reported]
                            self.supervisor.urls = found or [url]
                        task_status.started(reported)
                        task_status = trio.TASK_STATUS_IGNORED
                        served_from = trio.current_time()
                        await worker.ended()
                finally:
                    # It ended, or we are stopping (cancelled) or failed:
                    # either way it is reaped here, never left behind.
                    self.supervisor._workers[index] = None
                    status = await worker.stop(self.stop_timeout)
                what = f"worker {index} (pid {worker.pid}) {describe_status(status)}"
            if not self.up:
                raise WorkerError(f"{what} before it served {url}")
            served = 0.0 if served_from is None else trio.current_time() - served_from
            if served >= self.max_restart_delay:
                delay = self.restart_delay  # it served a good while: start afresh
            log.warning("%s; restarting it in %.3g s", what, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, self.max_restart_delay)
            self.supervisor.restarts += 1


_STARTING = (WorkerError, trio.Cancelled)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The plain exceptions inside (possibly nested) exception groups."""
    inner = getattr(exc, "exceptions", None)  # duck-typed: 3.10 has a backport
    if isinstance(inner, list | tuple):
        return [leaf for group in inner for leaf in _leaves(group)]
    return [exc]

"""packeteer's callback scheduler, rebuilt as a trio nursery of cancel scopes.

Every registration (I/O watch, timer, user event) is one task running in its
own :class:`trio.CancelScope` inside the scheduler's nursery: cancelling a
:class:`Registration` cancels that scope, a failing callback cancels its
siblings, and leaving ``async with open_scheduler()`` cancels everything.
"""

from __future__ import annotations

import enum
import inspect
import math
import os
import select
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import trio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]


class Events(enum.IntFlag):
    """Event bits with packeteer's values; ``USER`` and above are user events."""

    READ = 1
    WRITE = 2
    ERROR = 4
    OPEN = 8  # accepted for compatibility, never delivered
    CLOSE = 16
    TIMEOUT = 128
    USER = 1 << 15


#: Every I/O event: the default of :meth:`Scheduler.unregister_connector`.
IO_EVENTS = Events.READ | Events.WRITE | Events.ERROR | Events.OPEN | Events.CLOSE
_WATCHABLE = Events.READ | Events.WRITE | Events.ERROR | Events.CLOSE
_BELOW_USER = int(Events.USER) - 1

#: ``callback(now, events, connector)``, plain or async; its result is ignored.
Callback = Callable[[float, Events, Any], object]


def _without(events: Events, remove: Events | int) -> Events:
    # Not `events & ~remove`: IntFlag's ~ loses user bits above the named ones.
    return Events(int(events) & ~int(remove))


class SchedulerConnector(Protocol):
    """What :meth:`Scheduler.register_connector` needs from a connector."""

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        """(fd watched for READ, fd watched for WRITE), None where a direction
        does not exist; raises ``trio.ClosedResourceError`` once closed."""
        ...


# After a wakeup carrying only conditions nobody asked for (CLOSE is watched
# while unread data is pending), trio cannot wait for the rest alone: poll at
# this pace instead of spinning.
_IDLE_POLL = 0.05
_POLLRDHUP = getattr(select, "POLLRDHUP", 0)


class Registration:
    """Handle of one registration: a task in its own cancel scope."""

    def __init__(
        self,
        scheduler: Scheduler,
        key: Any,
        callback: Callback,
        events: Events,
        connector: Any,
        oneshot: bool,
        run_in_thread: bool,
    ) -> None:
        self._scheduler, self._key = scheduler, key
        self._events = events
        self._scope = trio.CancelScope()
        self._wait_scope: trio.CancelScope | None = None
        self._send: trio.MemorySendChannel[Events] | None = None  # user events
        self._done = False
        self._oneshot, self._run_in_thread = oneshot, run_in_thread
        self.callback = callback
        self.connector = connector

    @property
    def events(self) -> Events:
        """The events currently registered for."""
        return self._events

    @property
    def cancelled(self) -> bool:
        """True once cancelled: :meth:`cancel`, unregistering, scheduler exit."""
        return self._scope.cancel_called

    @property
    def done(self) -> bool:
        """True once the callback can never run again (cancelled, count
        exhausted, oneshot fired, connector closed)."""
        return self._done

    def cancel(self) -> None:
        """End the registration; a callback that is running is cancelled too."""
        self._scope.cancel()
        self._scheduler._forget(self)

    def _add(self, events: Events, oneshot: bool, run_in_thread: bool) -> None:
        if (oneshot, run_in_thread) != (self._oneshot, self._run_in_thread):
            raise ValueError("callback already registered with other options")
        self._set_events(self._events | events)

    def _set_events(self, events: Events) -> None:
        self._events = events
        if self._wait_scope is not None:  # re-wait for the new mask
            self._wait_scope.cancel()

    def __repr__(self) -> str:
        state = "done" if self._done else "active"
        return f"<Registration {self._events!r} {self.callback!r} {state}>"


class _Round:
    def __init__(self) -> None:
        self.finished = trio.Event()
        self.outcome = "retry"  # or "ready", "closed"


class _Gate:
    """trio lets one task wait per fd and direction, so registrations watching
    the same one share each wait: one task waits, the others follow it."""

    def __init__(self, gates: dict[tuple[int, bool], _Gate], key: tuple[int, bool]):
        self._gates, self._key = gates, key
        self._round: _Round | None = None
        self._users = 0

    async def wait(self) -> bool:
        """Wait until the fd is ready (True) or closed (False)."""
        self._users += 1
        try:
            while (rnd := self._round) is not None:
                await rnd.finished.wait()
                if rnd.outcome != "retry":  # retry: that waiter was cancelled
                    return rnd.outcome == "ready"
            rnd = self._round = _Round()
            try:
                fd, read = self._key
                await (
                    trio.lowlevel.wait_readable if read else trio.lowlevel.wait_writable
                )(fd)
                rnd.outcome = "ready"
            except trio.ClosedResourceError:  # notify_closing(): closed locally
                rnd.outcome = "closed"
            finally:
                self._round = None
                rnd.finished.set()
            return rnd.outcome == "ready"
        finally:
            self._users -= 1
            if not self._users:
                del self._gates[self._key]


def _poll(waits: list[tuple[int, bool]], woke: Events) -> tuple[Events, bool]:
    """Classify the watched fds with a zero-timeout poll: (events, fd invalid)."""
    # Windows has no poll(): trust the wakeup.
    if sys.platform == "win32" or not hasattr(select, "poll"):  # pragma: no cover
        return woke, False
    poller = select.poll()
    flags: dict[int, int] = {}
    for fd, read in waits:
        want = select.POLLIN | select.POLLPRI | _POLLRDHUP if read else select.POLLOUT
        flags[fd] = flags.get(fd, 0) | want
    for fd, want in flags.items():
        poller.register(fd, want)
    revents = 0
    for _, rev in poller.poll(0):
        revents |= rev
    seen = Events(0)
    for bits, event in (
        (select.POLLIN | select.POLLPRI, Events.READ),
        (select.POLLOUT, Events.WRITE),
        (select.POLLHUP | _POLLRDHUP, Events.CLOSE),
        (select.POLLERR, Events.ERROR),
    ):
        seen |= event if revents & bits else 0
    return seen, bool(revents & select.POLLNVAL)


def _waits(mask: Events, rfd: int | None, wfd: int | None) -> list[tuple[int, bool]]:
    waits = []
    if mask & Events.READ and rfd is not None:
        waits.append((rfd, True))
    if mask & Events.WRITE and wfd is not None:
        waits.append((wfd, False))
    if not waits and mask & (Events.CLOSE | Events.ERROR):
        # Hang-ups and errors wake readers, even on a pipe's write end.
        fd = rfd if rfd is not None else wfd
        waits += [] if fd is None else [(fd, True)]
    return waits


def _fds_unchanged(
    conn: SchedulerConnector, fds: tuple[int | None, int | None]
) -> bool:
    try:
        return conn._scheduler_fds() == fds
    except trio.ClosedResourceError:
        return True


class Scheduler:
    """Runs callbacks on I/O readiness, timers and user events.

    Made by :func:`open_scheduler`. The methods are synchronous, for the trio
    thread; each starts, changes or cancels a registration's task.
    """

    def __init__(self, nursery: trio.Nursery, limiter: trio.CapacityLimiter) -> None:
        self._nursery = nursery
        self._limiter = limiter
        self._closed = False
        self._live: set[Registration] = set()
        # (id(connector),), ("timer", callback), ("user", callback) -> handles
        self._index: dict[Any, list[Registration]] = {}
        self._gates: dict[tuple[int, bool], _Gate] = {}

    @property
    def thread_limiter(self) -> trio.CapacityLimiter:
        """The limiter of ``run_in_thread`` callbacks (``max_threads`` tokens)."""
        return self._limiter

    # -- I/O ---------------------------------------------------------------

    def register_connector(
        self,
        events: Events | int,
        connector: SchedulerConnector,
        callback: Callback,
        *,
        oneshot: bool = False,
        run_in_thread: bool = False,
    ) -> Registration:
        """Call ``callback`` while ``connector`` is ready for ``events``.

        Level-triggered: while the condition holds the callback runs again
        after each run. READ watches the read side, WRITE the write side;
        CLOSE means the peer hung up, or the connector was closed locally
        (which also ends the registration); ERROR is an OS error condition.
        The same (connector, callback) again merges the masks and returns the
        same handle. ``oneshot=True`` ends the registration after one run.
        """
        events = Events(events)
        if int(events) & ~int(IO_EVENTS) or not events & _WATCHABLE:
            raise ValueError(f"not a mask of I/O events: {events!r}")
        rfd, wfd = connector._scheduler_fds()  # raises if already closed
        if (
            (events & Events.READ and rfd is None)
            or (events & Events.WRITE and wfd is None)
            or not _waits(events, rfd, wfd)
        ):
            raise ValueError(f"{connector!r} has no side to watch for {events!r}")
        key = (id(connector),)
        for reg in self._index.get(key, ()):
            if reg.callback == callback:
                reg._add(events, oneshot, run_in_thread)
                return reg
        reg = Registration(
            self, key, callback, events, connector, oneshot, run_in_thread
        )
        return self._start(reg, self._run_io, reg)

    def unregister_connector(
        self,
        connector: SchedulerConnector,
        events: Events | int = IO_EVENTS,
        callback: Callback | None = None,
    ) -> None:
        """Stop watching ``events`` on ``connector`` for ``callback`` (default:
        for every callback); a registration left without events is cancelled."""
        for reg in list(self._index.get((id(connector),), ())):
            if callback is not None and reg.callback != callback:
                continue
            left = _without(reg.events, events)
            if left & _WATCHABLE:
                reg._set_events(left)
            else:
                reg.cancel()

    async def _run_io(self, reg: Registration) -> None:
        conn = reg.connector
        while True:
            try:
                fds = conn._scheduler_fds()
            except trio.ClosedResourceError:
                break
            mask = reg.events
            if not (waits := _waits(mask, *fds)):
                break  # the watched side was shut down
            woke: Events | None = Events(0)
            with trio.CancelScope() as reg._wait_scope:
                woke = await self._wait_any(waits)
            reg._wait_scope = None
            if woke == 0:  # the mask changed
                continue
            seen, gone = (Events(0), True) if woke is None else _poll(waits, woke)
            if gone:  # an fd was closed: one side (then re-check), or all of it
                if _fds_unchanged(conn, fds):
                    break
                continue
            if fired := seen & reg.events:  # the mask as of now, not as of the wait
                await self._invoke(reg, fired, conn)
                if reg._oneshot:
                    return
            elif seen:
                await trio.sleep(_IDLE_POLL)
        if reg.events & Events.CLOSE:
            await self._invoke(reg, Events.CLOSE, conn)

    async def _wait_any(self, waits: list[tuple[int, bool]]) -> Events | None:
        """Wait for the first ready fd: the directions that woke, None if closed."""
        woke: Events | None = Events(0)

        async def wait_one(key: tuple[int, bool], done: trio.CancelScope) -> None:
            nonlocal woke
            if (gate := self._gates.get(key)) is None:
                gate = self._gates[key] = _Gate(self._gates, key)
            if not await gate.wait():
                woke = None
            elif woke is not None:
                woke |= Events.READ if key[1] else Events.WRITE
            done.cancel()

        if len(waits) == 1:
            await wait_one(waits[0], trio.CancelScope())
        else:
            async with trio.open_nursery() as nursery:
                for key in waits:
                    nursery.start_soon(wait_one, key, nursery.cancel_scope)
        return woke

    # -- timers ------------------------------------------------------------

    def schedule_once(
        self, delay: float, callback: Callback, *, run_in_thread: bool = False
    ) -> Registration:
        """Run ``callback`` once with TIMEOUT, ``delay`` seconds from now."""
        if delay < 0:
            raise ValueError(f"delay must be >= 0, not {delay!r}")
        return self._timer(trio.current_time() + delay, 0, 1, callback, run_in_thread)

    def schedule_at(
        self, deadline: float, callback: Callback, *, run_in_thread: bool = False
    ) -> Registration:
        """Run ``callback`` once at ``deadline`` on the ``trio.current_time()``
        clock (immediately if it has passed)."""
        return self._timer(deadline, 0, 1, callback, run_in_thread)

    def schedule(
        self,
        interval: float,
        callback: Callback,
        *,
        first: float | None = None,
        count: int | None = None,
        run_in_thread: bool = False,
    ) -> Registration:
        """Run ``callback`` every ``interval`` seconds, ``count`` times (None:
        until cancelled). The first run is ``first`` seconds from now (default
        ``interval``); later runs keep a fixed rate from it."""
        if not interval > 0:
            raise ValueError(f"interval must be > 0, not {interval!r}")
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1 or None, not {count!r}")
        delay = interval if first is None else first
        if delay < 0:
            raise ValueError(f"first must be >= 0, not {first!r}")
        deadline = trio.current_time() + delay
        return self._timer(deadline, interval, count, callback, run_in_thread)

    def unschedule(self, callback: Callback) -> None:
        """Cancel every timer of ``callback``."""
        for reg in list(self._index.get(("timer", callback), ())):
            reg.cancel()

    def _timer(
        self,
        deadline: float,
        interval: float,
        count: int | None,
        cb: Callback,
        thr: bool,
    ) -> Registration:
        reg = Registration(self, ("timer", cb), cb, Events.TIMEOUT, None, False, thr)
        return self._start(reg, self._run_timer, reg, deadline, interval, count)

    async def _run_timer(
        self, reg: Registration, deadline: float, interval: float, count: int | None
    ) -> None:
        runs = 0
        while count is None or runs < count:
            await trio.sleep_until(deadline)
            await self._invoke(reg, Events.TIMEOUT, None)
            runs += 1
            deadline += interval

    # -- user events -------------------------------------------------------

    def register_event(
        self, events: Events | int, callback: Callback, *, run_in_thread: bool = False
    ) -> Registration:
        """Call ``callback`` whenever any of the user ``events`` is fired.
        The same callback again merges the masks and returns the same handle."""
        events = Events(events)
        if not events or events & _BELOW_USER:
            raise ValueError(f"user events are Events.USER and above: {events!r}")
        key = ("user", callback)
        for reg in self._index.get(key, ()):
            reg._add(events, False, run_in_thread)
            return reg
        reg = Registration(self, key, callback, events, None, False, run_in_thread)
        reg._send, receive = trio.open_memory_channel[Events](math.inf)
        return self._start(reg, self._run_user, reg, receive)

    def unregister_event(self, events: Events | int, callback: Callback) -> None:
        """Stop calling ``callback`` for ``events``; with none left it is dropped."""
        for reg in list(self._index.get(("user", callback), ())):
            if left := _without(reg.events, events):
                reg._set_events(left)
            else:
                reg.cancel()

    def fire_events(self, events: Events | int) -> None:
        """Fire user events: each callback registered for any of them runs once,
        with the fired events it registered for. ValueError for system events."""
        events = Events(events)
        if events & _BELOW_USER:
            raise ValueError(
                f"only user events (>= Events.USER) can be fired: {events!r}"
            )
        for reg in self._live:
            if (hit := reg.events & events) and reg._send is not None:
                reg._send.send_nowait(hit)

    async def _run_user(
        self, reg: Registration, receive: trio.MemoryReceiveChannel[Events]
    ) -> None:
        with receive:
            async for fired in receive:
                await self._invoke(reg, fired, None)

    # -- common ------------------------------------------------------------

    def _start(
        self, reg: Registration, fn: Callable[..., Any], *args: Any
    ) -> Registration:
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        cb = reg.callback
        call = getattr(cb, "__call__", None)  # noqa: B004 - objects with async __call__
        if reg._run_in_thread and (
            inspect.iscoroutinefunction(cb) or inspect.iscoroutinefunction(call)
        ):
            raise TypeError("run_in_thread=True needs a plain (sync) callback")
        self._live.add(reg)
        self._index.setdefault(reg._key, []).append(reg)
        self._nursery.start_soon(self._task, reg, fn, args, name=repr(reg))
        return reg

    async def _task(
        self, reg: Registration, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        try:
            with reg._scope:
                await fn(*args)
        finally:
            reg._done = True
            self._forget(reg)

    def _forget(self, reg: Registration) -> None:
        self._live.discard(reg)
        regs = self._index.get(reg._key, [])
        if reg in regs:
            regs.remove(reg)
            if not regs:
                del self._index[reg._key]

    async def _invoke(self, reg: Registration, events: Events, connector: Any) -> None:
        # A wakeup may already be queued when the registration gets cancelled.
        await trio.lowlevel.checkpoint_if_cancelled()
        now = trio.current_time()
        if reg._run_in_thread:
            await trio.to_thread.run_sync(
                reg.callback, now, events, connector, limiter=self._limiter
            )
        elif inspect.isawaitable(result := reg.callback(now, events, connector)):
            await result


@asynccontextmanager
async def open_scheduler(*, max_threads: int | None = None) -> AsyncIterator[Scheduler]:
    """Open a :class:`Scheduler`; leaving the block cancels every registration.

    ``max_threads`` bounds concurrent ``run_in_thread`` callbacks (default:
    the CPU count, like packeteer's workers). An exception in a callback
    cancels the rest and is raised here: bare when it is the only one, in an
    ``ExceptionGroup`` when several fail at once.
    """
    tokens = max_threads if max_threads is not None else os.cpu_count() or 1
    if tokens < 1:
        raise ValueError(f"max_threads must be >= 1, not {max_threads!r}")
    try:
        async with trio.open_nursery() as nursery:
            sched = Scheduler(nursery, trio.CapacityLimiter(tokens))
            try:
                yield sched
            finally:
                sched._closed = True
                for reg in list(sched._live):
                    reg.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        # A lone error comes bare, so `except ValueError:` works as expected.
        exc = group.exceptions[0]
        context = exc.__context__
        try:
            raise exc
        finally:
            exc.__context__ = context  # keep its own chain, not the group
            del exc

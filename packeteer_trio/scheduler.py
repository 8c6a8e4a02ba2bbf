"""packeteer's callback scheduler, rebuilt as a trio nursery of cancel scopes.

Every registration (I/O watch, timer, user event) is one task running in its
own :class:`trio.CancelScope` inside the scheduler's nursery, so cancelling a
:class:`Registration` is cancelling that scope, a failing callback cancels
its siblings and leaving ``async with open_scheduler()`` cancels everything.
"""

from __future__ import annotations

import enum
import inspect
import math
import os
import select
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import trio

__all__ = [
    "IO_EVENTS",
    "Callback",
    "Events",
    "Registration",
    "Scheduler",
    "SchedulerConnector",
    "open_scheduler",
]


class Events(enum.IntFlag):
    """Event bits, with packeteer's values. Bits from ``USER`` up are user events."""

    READ = 1
    WRITE = 2
    ERROR = 4
    OPEN = 8  # accepted for compatibility; never delivered (as on most platforms)
    CLOSE = 16
    TIMEOUT = 128
    USER = 1 << 15


#: Every I/O event; the default mask of :meth:`Scheduler.unregister_connector`.
IO_EVENTS = Events.READ | Events.WRITE | Events.ERROR | Events.OPEN | Events.CLOSE
_WATCHABLE = Events.READ | Events.WRITE | Events.ERROR | Events.CLOSE
_BELOW_USER = Events.USER - 1


def _without(events: Events, remove: Events | int) -> Events:
    # Not `events & ~remove`: IntFlag's ~ drops user bits above the named ones.
    return Events(int(events) & ~int(remove))

#: ``callback(now, events, connector)``, plain or async; the result is ignored.
Callback = Callable[[float, Events, Any], object]


class SchedulerConnector(Protocol):
    """What :meth:`Scheduler.register_connector` needs from a connector."""

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        """Return (fd to watch for READ, fd to watch for WRITE); None where a
        direction does not exist. Raise ``trio.ClosedResourceError`` if closed."""
        ...


# After a wakeup that only carried conditions nobody asked for (say CLOSE is
# watched while unread data is pending), trio cannot wait for the rest alone;
# polling at this pace instead of spinning costs little and still notices.
_IDLE_POLL = 0.05
_HAVE_POLL = hasattr(select, "poll")
_POLLRDHUP = getattr(select, "POLLRDHUP", 0)


class Registration:
    """Handle of one registration: a task in its own cancel scope."""

    def __init__(
        self,
        scheduler: Scheduler,
        callback: Callback,
        events: Events,
        connector: Any = None,
        *,
        oneshot: bool = False,
        run_in_thread: bool = False,
    ) -> None:
        self._scheduler = scheduler
        self._events = events
        self._scope = trio.CancelScope()
        self._wait_scope: trio.CancelScope | None = None
        self._done = False
        self._send: trio.MemorySendChannel[Events] | None = None  # user events
        self._oneshot = oneshot
        self._run_in_thread = run_in_thread
        self.callback = callback
        self.connector = connector

    @property
    def events(self) -> Events:
        """The events currently registered for."""
        return self._events

    @property
    def cancelled(self) -> bool:
        """True once cancelled (by :meth:`cancel`, an unregister call or the
        scheduler closing)."""
        return self._scope.cancel_called

    @property
    def done(self) -> bool:
        """True once the callback will never run again (cancelled, count
        exhausted, oneshot fired, connector closed)."""
        return self._done

    def cancel(self) -> None:
        """Stop the registration; a callback that is running is cancelled too."""
        self._scope.cancel()
        self._scheduler._forget(self)

    def _set_events(self, events: Events) -> None:
        self._events = events
        if self._wait_scope is not None:  # re-wait with the new mask
            self._wait_scope.cancel()

    def _merge_options(self, oneshot: bool, run_in_thread: bool) -> None:
        if (oneshot, run_in_thread) != (self._oneshot, self._run_in_thread):
            raise ValueError(
                "callback already registered with other options; unregister it first"
            )

    def __repr__(self) -> str:
        state = "done" if self._done else "active"
        return f"<Registration {self._events!r} {self.callback!r} {state}>"


class _Round:
    """One wait for an fd; ``outcome`` is 'ready', 'closed' or 'retry'."""

    def __init__(self) -> None:
        self.finished = trio.Event()
        self.outcome = "retry"


class _Gate:
    """trio lets only one task wait per fd and direction, so registrations
    watching the same one share each wait: one task waits, the rest follow."""

    def __init__(self, gates: dict[tuple[int, bool], _Gate], fd: int, read: bool):
        self._gates, self._fd, self._read = gates, fd, read
        self._round: _Round | None = None
        self._users = 0

    async def wait(self) -> bool:
        """Wait until the fd is ready (True) or gets closed (False)."""
        self._users += 1
        try:
            while True:
                if self._round is None:
                    return await self._lead()
                rnd = self._round
                await rnd.finished.wait()
                if rnd.outcome != "retry":  # retry: the leader was cancelled
                    return rnd.outcome == "ready"
        finally:
            self._users -= 1
            if not self._users:
                self._gates.pop((self._fd, self._read), None)

    async def _lead(self) -> bool:
        rnd = self._round = _Round()
        try:
            if self._read:
                await trio.lowlevel.wait_readable(self._fd)
            else:
                await trio.lowlevel.wait_writable(self._fd)
            rnd.outcome = "ready"
        except trio.ClosedResourceError:  # notify_closing(): closed locally
            rnd.outcome = "closed"
        finally:
            self._round = None
            rnd.finished.set()
        return rnd.outcome == "ready"


def _poll(waits: list[tuple[int, bool]]) -> tuple[Events, bool]:
    """Classify the fds now (zero-timeout poll): (events seen, fd invalid)."""
    flags: dict[int, int] = {}
    for fd, read in waits:
        want = select.POLLIN | select.POLLPRI | _POLLRDHUP if read else select.POLLOUT
        flags[fd] = flags.get(fd, 0) | want
    poller = select.poll()
    for fd, want in flags.items():
        poller.register(fd, want)
    seen, invalid = Events(0), False
    for _, rev in poller.poll(0):
        if rev & (select.POLLIN | select.POLLPRI):
            seen |= Events.READ
        if rev & select.POLLOUT:
            seen |= Events.WRITE
        if rev & (select.POLLHUP | _POLLRDHUP):
            seen |= Events.CLOSE
        if rev & select.POLLERR:
            seen |= Events.ERROR
        invalid = invalid or bool(rev & select.POLLNVAL)
    return seen, invalid


def _is_async(fn: Callable[..., object]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - async __call__ objects
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


class Scheduler:
    """Runs callbacks on I/O readiness, timers and user events.

    Create it with :func:`open_scheduler`. All methods are synchronous and
    must be called from the trio thread; each starts or changes a task.
    """

    def __init__(self, nursery: trio.Nursery, limiter: trio.CapacityLimiter) -> None:
        self._nursery = nursery
        self._limiter = limiter
        self._closed = False
        self._live: set[Registration] = set()
        self._io: dict[int, dict[Callback, Registration]] = {}  # id(connector)
        self._timers: dict[Callback, set[Registration]] = {}
        self._user: dict[Callback, Registration] = {}
        self._gates: dict[tuple[int, bool], _Gate] = {}

    @property
    def thread_limiter(self) -> trio.CapacityLimiter:
        """Limiter of ``run_in_thread`` callbacks (``max_threads`` tokens)."""
        return self._limiter

    # -- I/O --------------------------------------------------------------

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

        Level-triggered: while the condition holds, the callback runs again
        after each run. READ watches the read side, WRITE the write side;
        CLOSE means the peer hung up, or the connector was closed locally,
        which also ends the registration. Registering the same
        (connector, callback) again merges the masks and returns the same
        handle. ``oneshot=True`` ends the registration after one run.
        """
        events = Events(events)
        if events & ~IO_EVENTS or not events & _WATCHABLE:
            raise ValueError(f"not a mask of I/O events: {events!r}")
        rfd, wfd = connector._scheduler_fds()  # raises if already closed
        if events & Events.READ and rfd is None:
            raise ValueError(f"{connector!r} has no read side to watch")
        if events & Events.WRITE and wfd is None:
            raise ValueError(f"{connector!r} has no write side to watch")
        regs = self._io.setdefault(id(connector), {})
        reg = regs.get(callback)
        if reg is not None:
            reg._merge_options(oneshot, run_in_thread)
            reg._set_events(reg.events | events)
            return reg
        reg = self._new(callback, events, connector, oneshot, run_in_thread)
        regs[callback] = reg
        self._start(reg, self._run_io, reg)
        return reg

    def unregister_connector(
        self,
        connector: SchedulerConnector,
        events: Events | int = IO_EVENTS,
        callback: Callback | None = None,
    ) -> None:
        """Stop watching ``events`` on ``connector`` for ``callback`` (default:
        every callback); a registration left without events is cancelled."""
        regs = self._io.get(id(connector), {})
        if callback is None:
            targets = list(regs.values())
        else:
            targets = [regs[callback]] if callback in regs else []
        for reg in targets:
            left = _without(reg.events, events)
            if left & _WATCHABLE:
                reg._set_events(left)
            else:
                reg.cancel()

    async def _run_io(self, reg: Registration) -> None:
        conn = reg.connector
        while True:
            try:
                rfd, wfd = conn._scheduler_fds()
            except trio.ClosedResourceError:
                break
            mask = reg.events
            waits: list[tuple[int, bool]] = []
            if mask & Events.READ and rfd is not None:
                waits.append((rfd, True))
            if mask & Events.WRITE and wfd is not None:
                waits.append((wfd, False))
            if not waits:  # CLOSE/ERROR only: hang-ups and errors wake readers
                waits.append((rfd if rfd is not None else wfd, True))  # type: ignore[arg-type]
            with trio.CancelScope() as reg._wait_scope:
                woke = await self._wait_any(waits)
            reg._wait_scope = None
            if woke is None:
                break
            if not woke:  # mask changed under us
                continue
            seen, invalid = _poll(waits) if _HAVE_POLL else (woke, False)
            if invalid:
                break
            if seen & mask:
                await self._invoke(reg, seen & mask, conn)
                if reg._oneshot:
                    return
            elif seen:
                await trio.sleep(_IDLE_POLL)
        if reg.events & Events.CLOSE:
            await self._invoke(reg, Events.CLOSE, conn)

    async def _wait_any(self, waits: list[tuple[int, bool]]) -> Events | None:
        """Wait for the first ready fd: the directions woken, or None if closed."""
        woke = Events(0)
        closed = False

        async def wait_one(fd: int, read: bool, done: trio.CancelScope) -> None:
            nonlocal woke, closed
            gate = self._gates.get((fd, read))
            if gate is None:
                gate = self._gates[fd, read] = _Gate(self._gates, fd, read)
            if await gate.wait():
                woke |= Events.READ if read else Events.WRITE
            else:
                closed = True
            done.cancel()

        if len(waits) == 1:
            await wait_one(*waits[0], trio.CancelScope())
        else:
            async with trio.open_nursery() as nursery:
                for fd, read in waits:
                    nursery.start_soon(wait_one, fd, read, nursery.cancel_scope)
        return None if closed else woke

    # -- timers -----------------------------------------------------------

    def schedule_once(
        self, delay: float, callback: Callback, *, run_in_thread: bool = False
    ) -> Registration:
        """Run ``callback`` once, ``delay`` seconds from now, with TIMEOUT."""
        if delay < 0:
            raise ValueError(f"delay must be >= 0, not {delay!r}")
        return self._timer(trio.current_time() + delay, 0, 1, callback, run_in_thread)

    def schedule_at(
        self, deadline: float, callback: Callback, *, run_in_thread: bool = False
    ) -> Registration:
        """Run ``callback`` once at ``deadline`` (``trio.current_time()`` clock)."""
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
        until cancelled). The first run is ``first`` seconds from now
        (default: ``interval``); later runs keep a fixed rate from it."""
        if not interval > 0:
            raise ValueError(f"interval must be > 0, not {interval!r}")
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1 or None, not {count!r}")
        delay = interval if first is None else first
        if delay < 0:
            raise ValueError(f"first must be >= 0, not {first!r}")
        start = trio.current_time() + delay
        return self._timer(start, interval, count, callback, run_in_thread)

    def unschedule(self, callback: Callback) -> None:
        """Cancel every timer of ``callback``."""
        for reg in list(self._timers.get(callback, ())):
            reg.cancel()

    def _timer(
        self,
        deadline: float,
        interval: float,
        count: int | None,
        callback: Callback,
        run_in_thread: bool,
    ) -> Registration:
        reg = self._new(callback, Events.TIMEOUT, None, False, run_in_thread)
        self._timers.setdefault(callback, set()).add(reg)
        self._start(reg, self._run_timer, reg, deadline, interval, count)
        return reg

    async def _run_timer(
        self, reg: Registration, deadline: float, interval: float, count: int | None
    ) -> None:
        runs = 0
        while count is None or runs < count:
            await trio.sleep_until(deadline)
            await self._invoke(reg, Events.TIMEOUT, None)
            runs += 1
            deadline += interval

    # -- user events ------------------------------------------------------

    def register_event(
        self, events: Events | int, callback: Callback, *, run_in_thread: bool = False
    ) -> Registration:
        """Call ``callback`` when any of the user ``events`` is fired.
        Registering the same callback again merges the masks."""
        events = Events(events)
        if not events or events & _BELOW_USER:
            raise ValueError(f"user events are Events.USER and above: {events!r}")
        reg = self._user.get(callback)
        if reg is not None:
            reg._merge_options(False, run_in_thread)
            reg._set_events(reg.events | events)
            return reg
        reg = self._new(callback, events, None, False, run_in_thread)
        self._user[callback] = reg
        reg._send, receive = trio.open_memory_channel[Events](math.inf)
        self._start(reg, self._run_user, reg, receive)
        return reg

    def unregister_event(self, events: Events | int, callback: Callback) -> None:
        """Stop calling ``callback`` for ``events``; with none left it is dropped."""
        reg = self._user.get(callback)
        if reg is None:
            return
        left = _without(reg.events, events)
        if left:
            reg._set_events(left)
        else:
            reg.cancel()

    def fire_events(self, events: Events | int) -> None:
        """Fire user events: every callback registered for any of them runs
        once, with the fired events it registered for. Raises ValueError for
        bits below ``Events.USER``."""
        events = Events(events)
        if events & _BELOW_USER:
            raise ValueError(f"only user events can be fired: {events!r}")
        for reg in self._user.values():
            if reg.events & events and reg._send is not None:
                reg._send.send_nowait(reg.events & events)

    async def _run_user(
        self, reg: Registration, receive: trio.MemoryReceiveChannel[Events]
    ) -> None:
        with receive:
            async for fired in receive:
                await self._invoke(reg, fired, None)

    # -- common -----------------------------------------------------------

    def _new(
        self,
        callback: Callback,
        events: Events,
        connector: Any,
        oneshot: bool,
        run_in_thread: bool,
    ) -> Registration:
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        if run_in_thread and _is_async(callback):
            raise TypeError("run_in_thread=True needs a plain (sync) callback")
        return Registration(
            self,
            callback,
            events,
            connector,
            oneshot=oneshot,
            run_in_thread=run_in_thread,
        )

    def _start(self, reg: Registration, fn: Callable[..., Any], *args: Any) -> None:
        self._live.add(reg)
        self._nursery.start_soon(self._task, reg, fn, args, name=repr(reg))

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
        cb = reg.callback
        if reg.connector is not None:
            regs = self._io.get(id(reg.connector), {})
            if regs.get(cb) is reg:
                del regs[cb]
                if not regs:
                    del self._io[id(reg.connector)]
        elif reg.events & Events.TIMEOUT:
            timers = self._timers.get(cb)
            if timers is not None:
                timers.discard(reg)
                if not timers:
                    del self._timers[cb]
        elif self._user.get(cb) is reg:
            del self._user[cb]

    async def _invoke(self, reg: Registration, events: Events, connector: Any) -> None:
        now = trio.current_time()
        if reg._run_in_thread:
            result = await trio.to_thread.run_sync(
                reg.callback, now, events, connector, limiter=self._limiter
            )
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError("run_in_thread=True needs a plain (sync) callback")
        else:
            result = reg.callback(now, events, connector)
            if inspect.isawaitable(result):
                await result


@asynccontextmanager
async def open_scheduler(*, max_threads: int | None = None) -> AsyncIterator[Scheduler]:
    """Open a :class:`Scheduler`; leaving the block cancels every registration.

    ``max_threads`` bounds concurrent ``run_in_thread`` callbacks (default: the
    CPU count, like packeteer's worker threads). An exception in a callback
    cancels the rest and is raised here; it comes bare when it is the only
    one, several at once come as an ``ExceptionGroup``.
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
        # A lone error comes bare, so `except ValueError` works as users expect.
        exc = group.exceptions[0]
        context = exc.__context__
        try:
            raise exc
        finally:
            exc.__context__ = context  # keep its own chain, not the group
            del exc

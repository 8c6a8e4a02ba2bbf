"""packeteer's callback scheduler, rebuilt as a trio nursery of cancel scopes.

Every registration (I/O watch, timer, user event) is one task running in its
own :class:`trio.CancelScope` inside the scheduler's nursery: cancelling a
:class:`Registration` cancels that scope, a failing callback cancels its
siblings, and leaving ``async with open_scheduler()`` cancels everything.
The I/O watches live in :mod:`._scheduler_io`, the argument checks in
:mod:`._scheduler_checks`, the event bits in :mod:`._scheduler_events`.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._scheduler_checks import (
    check_callback,
    check_count,
    check_mask,
    check_max_threads,
    check_seconds,
)
from ._scheduler_events import BELOW_USER, IO_EVENTS, WATCHABLE, Events
from ._scheduler_io import (
    HandleWait,
    IOEngine,
    SchedulerConnector,
    Watch,
    check_watchable,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "IO_EVENTS",
    "Callback",
    "Events",
    "HandleWait",
    "Registration",
    "Scheduler",
    "SchedulerConnector",
    "open_scheduler",
]

#: ``callback(now, events, connector)``, plain or async; its result is ignored.
Callback = Callable[[float, Events, Any], object]


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
        self._mask = int(events)
        self._scope = trio.CancelScope()
        self._wait_scope: trio.CancelScope | None = None  # the I/O wait's, if waiting
        self._cancelled = False  # cancel() was called: the I/O watch's check
        self._solo = False  # the I/O watch waits on trio directly (_scheduler_io)
        self._send: trio.MemorySendChannel[Events] | None = None  # user events
        self._done = False
        self._oneshot, self._run_in_thread = oneshot, run_in_thread
        self.callback = callback
        self.connector = connector

    @property
    def events(self) -> Events:
        """The events currently registered for."""
        return Events(self._mask)

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
        self._cancelled = True
        self._scope.cancel()
        self._scheduler._forget(self)

    def _add(self, events: int, oneshot: bool, run_in_thread: bool) -> None:
        if (oneshot, run_in_thread) != (self._oneshot, self._run_in_thread):
            raise ValueError("callback already registered with other options")
        self._set_mask(self._mask | events)

    def _set_mask(self, mask: int) -> None:
        self._mask = mask
        if (scope := self._wait_scope) is not None:  # set only while waiting
            self._wait_scope = None  # tells the watch to re-wait, queued wakeup or not
            scope.cancel()

    def __repr__(self) -> str:
        state = "done" if self._done else "active"
        return f"<Registration {self.events!r} {self.callback!r} {state}>"


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
        self._io = IOEngine(self._invoke)  # the shared waits of I/O watches

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
        events = check_mask(events)
        if int(events) & ~int(IO_EVENTS) or not events & WATCHABLE:
            raise ValueError(f"not a mask of I/O events: {events!r}")
        check_callback(callback)
        check_watchable(int(events), connector)
        key = (id(connector),)
        for reg in self._index.get(key, ()):
            if reg.callback == callback:
                reg._add(int(events), oneshot, run_in_thread)
                return reg
        reg = Registration(
            self, key, callback, events, connector, oneshot, run_in_thread
        )
        watch: Watch = reg  # what the engine reads of it, checked here
        return self._start(reg, self._io.watch, watch)

    def unregister_connector(
        self,
        connector: SchedulerConnector,
        events: Events | int = IO_EVENTS,
        callback: Callback | None = None,
    ) -> None:
        """Stop watching ``events`` on ``connector`` for ``callback`` (default:
        for every callback); a registration left without events is cancelled."""
        mask = int(check_mask(events))
        for reg in list(self._index.get((id(connector),), ())):
            if callback is not None and reg.callback != callback:
                continue
            left = reg._mask & ~mask
            if left & WATCHABLE:
                reg._set_mask(left)
            else:
                reg.cancel()

    # -- timers ------------------------------------------------------------

    def schedule_once(
        self, delay: float, callback: Callback, *, run_in_thread: bool = False
    ) -> Registration:
        """Run ``callback`` once with TIMEOUT, ``delay`` seconds from now
        (``math.inf``: never, until cancelled)."""
        delay = check_seconds(delay, "delay")
        check_callback(callback)
        return self._timer(trio.current_time() + delay, 0, 1, callback, run_in_thread)

    def schedule_at(
        self, deadline: float, callback: Callback, *, run_in_thread: bool = False
    ) -> Registration:
        """Run ``callback`` once at ``deadline`` on the ``trio.current_time()``
        clock (immediately if it has passed; ``math.inf``: never)."""
        deadline = check_seconds(deadline, "deadline", least=None)
        check_callback(callback)
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
        interval = check_seconds(interval, "interval", least=None)
        # inf would stop after one run: count runs could never all happen.
        if not 0 < interval < math.inf:
            raise ValueError(f"interval must be > 0 and finite, not {interval!r}")
        count = check_count(count)
        delay = interval if first is None else check_seconds(first, "first")
        check_callback(callback)
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
        events = check_mask(events)
        if not events or events & BELOW_USER:
            raise ValueError(f"user events are Events.USER and above: {events!r}")
        check_callback(callback)
        key = ("user", callback)
        for reg in self._index.get(key, ()):
            reg._add(int(events), False, run_in_thread)
            return reg
        reg = Registration(self, key, callback, events, None, False, run_in_thread)
        reg._send, receive = trio.open_memory_channel[Events](math.inf)
        return self._start(reg, self._run_user, reg, receive)

    def unregister_event(self, events: Events | int, callback: Callback) -> None:
        """Stop calling ``callback`` for ``events``; with none left it is dropped."""
        mask = int(check_mask(events))
        for reg in list(self._index.get(("user", callback), ())):
            if left := reg._mask & ~mask:
                reg._set_mask(left)
            else:
                reg.cancel()

    def fire_events(self, events: Events | int) -> None:
        """Fire user events: each callback registered for any of them runs once,
        with the fired events it registered for. ValueError for system events."""
        events = check_mask(events)
        if events & BELOW_USER:
            raise ValueError(
                f"only user events (>= Events.USER) can be fired: {events!r}"
            )
        for reg in self._live:
            if (hit := reg._mask & events) and reg._send is not None:
                reg._send.send_nowait(Events(hit))

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
        except BaseException as exc:
            if not isinstance(exc, trio.Cancelled):
                # The nursery cancels the rest once this leaves the task; say
                # so now, so that an I/O watch whose wakeup is already queued
                # does not call its callback in between.
                for other in list(self._live):
                    other.cancel()
            raise
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
        # `is not None` first: most callbacks are plain, and it is cheaper.
        elif (result := reg.callback(now, events, connector)) is not None and (
            inspect.isawaitable(result)
        ):
            await result


@asynccontextmanager
async def open_scheduler(*, max_threads: int | None = None) -> AsyncIterator[Scheduler]:
    """Open a :class:`Scheduler`; leaving the block cancels every registration.

    ``max_threads`` bounds concurrent ``run_in_thread`` callbacks (default:
    the CPU count, like packeteer's workers). An exception in a callback
    cancels the rest and is raised here: bare when it is the only one, in an
    ``ExceptionGroup`` when several fail at once.
    """
    tokens = check_max_threads(max_threads)
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

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
import numbers
import operator
import os
import select
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Protocol

import trio
from trio.lowlevel import wait_readable, wait_writable

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
# Masks are plain ints inside (IntFlag operations cost ~0.3 us each, and its ~
# loses user bits above the named ones); callbacks and handles get Events.
_READ, _WRITE, _ERROR, _CLOSE = map(
    int, (Events.READ, Events.WRITE, Events.ERROR, Events.CLOSE)
)
_WATCHABLE = _READ | _WRITE | _ERROR | _CLOSE
_BELOW_USER = int(Events.USER) - 1
_IO_EVENTS = tuple(Events(bits) for bits in range(32))  # bits -> Events, cheaply

#: ``callback(now, events, connector)``, plain or async; its result is ignored.
Callback = Callable[[float, Events, Any], object]


class SchedulerConnector(Protocol):
    """What :meth:`Scheduler.register_connector
    <packeteer_trio.Scheduler.register_connector>` needs from a connector.

    A connector whose "fds" are not descriptors or sockets (Windows pipe
    HANDLEs, which trio's ``wait_readable`` does not take) also has
    ``_scheduler_wait(read: bool) -> int``: it waits its own way and returns
    the event bits seen, raising ``trio.ClosedResourceError`` once closed.
    """

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        """(fd watched for READ, fd watched for WRITE), None where a direction
        does not exist; raises ``trio.ClosedResourceError`` once closed."""
        ...


#: ``connector._scheduler_wait``, where a connector has one.
HandleWait = Callable[[bool], Awaitable[int]]


# -- argument checks: at the call, so a bad value never reaches a task -------
# (where it would fail later, out of `async with`, cancelling everything)


def _check_mask(events: object, name: str = "events") -> Events:
    if isinstance(events, bool) or not isinstance(events, int):
        raise TypeError(
            f"{name} must be an Events mask (or an int of Events bits), "
            f"not {type(events).__name__} {events!r}"
        )
    return Events(events)


def _check_callback(callback: object) -> None:
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {callback!r}")
    try:
        hash(callback)  # callbacks identify registrations (unschedule, merging)
    except TypeError:
        raise TypeError(f"callback must be hashable, not {callback!r}") from None


def _check_seconds(value: object, name: str, *, least: float | None = 0) -> float:
    """*value* as float seconds: a real number, not NaN, at least *least*
    (None: any). ``inf`` is allowed where it means never, like trio.sleep."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a number of seconds, not {type(value).__name__} {value!r}"
        )
    seconds = float(value)
    if math.isnan(seconds):
        raise ValueError(f"{name} must be a number of seconds, not NaN")
    if least is not None and not seconds >= least:
        raise ValueError(f"{name} must be >= {least:g}, not {value!r}")
    return seconds


def _check_count(count: object) -> int | None:
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise TypeError(
            f"count must be a whole number or None, not {type(count).__name__} "
            f"{count!r}"
        )
    if count < 1:
        raise ValueError(f"count must be >= 1 or None, not {count!r}")
    return operator.index(count)


def _connector_fds(connector: object) -> tuple[int | None, int | None]:
    fds = getattr(connector, "_scheduler_fds", None)
    if fds is None:
        raise TypeError(
            "connector must be a packeteer_trio connector (a stream, listener, "
            "datagram socket or channel from connect, listen, open_datagram or "
            "connect_datagram; or an object with _scheduler_fds()), not "
            f"{connector!r}"
        )
    result: tuple[int | None, int | None] = fds()  # raises if already closed
    return result


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
        self._mask = int(events)
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
        self._scope.cancel()
        self._scheduler._forget(self)

    def _add(self, events: int, oneshot: bool, run_in_thread: bool) -> None:
        if (oneshot, run_in_thread) != (self._oneshot, self._run_in_thread):
            raise ValueError("callback already registered with other options")
        self._set_mask(self._mask | events)

    def _set_mask(self, mask: int) -> None:
        self._mask = mask
        if self._wait_scope is not None:  # set only while waiting: re-wait
            self._wait_scope.cancel()

    def __repr__(self) -> str:
        state = "done" if self._done else "active"
        return f"<Registration {self.events!r} {self.callback!r} {state}>"


class _Round:
    """One wait on an fd and direction, which other registrations follow."""

    __slots__ = ("followers", "woke")

    def __init__(self) -> None:
        self.followers: trio.Event | None = None  # made by the first follower
        # The event bits seen; 0: closed locally; None: that waiter was cancelled.
        self.woke: int | None = None


def _classifier(waits: list[tuple[int, bool]]) -> Callable[[int], int | None]:
    """``classify(woke)``: the events a zero-timeout poll of the watched fds
    sees (a wakeup cannot tell data from a hang-up), None if an fd is invalid.
    The poll object is made once per set of waits, not per wakeup."""
    # Windows has no poll(): trust the wakeup.
    if sys.platform == "win32" or not hasattr(select, "poll"):  # pragma: no cover
        return lambda woke: woke
    readable, hangup = select.POLLIN | select.POLLPRI, select.POLLHUP | _POLLRDHUP
    out, err, invalid = select.POLLOUT, select.POLLERR, select.POLLNVAL
    flags: dict[int, int] = {}
    for fd, read in waits:
        flags[fd] = flags.get(fd, 0) | (readable | _POLLRDHUP if read else out)
    poller = select.poll()
    for fd, want in flags.items():
        poller.register(fd, want)
    poll = poller.poll

    def classify(woke: int) -> int | None:
        revents = 0
        for _, rev in poll(0):
            revents |= rev
        if revents & invalid:
            return None
        return (
            (_READ if revents & readable else 0)
            | (_WRITE if revents & out else 0)
            | (_CLOSE if revents & hangup else 0)
            | (_ERROR if revents & err else 0)
        )

    return classify


def _as_seen(woke: int) -> int:
    return woke


def _waits(mask: int, rfd: int | None, wfd: int | None) -> list[tuple[int, bool]]:
    waits = []
    if mask & _READ and rfd is not None:
        waits.append((rfd, True))
    if mask & _WRITE and wfd is not None:
        waits.append((wfd, False))
    if not waits and mask & (_CLOSE | _ERROR):
        # Hang-ups and errors wake readers, even on a pipe's write end.
        fd = rfd if rfd is not None else wfd
        waits += [] if fd is None else [(fd, True)]
    return waits


def _fds(conn: SchedulerConnector) -> tuple[int | None, int | None] | None:
    try:
        return conn._scheduler_fds()
    except trio.ClosedResourceError:
        return None


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
        self._rounds: dict[tuple[int, bool], _Round] = {}  # (fd, read) -> wait

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
        events = _check_mask(events)
        if int(events) & ~int(IO_EVENTS) or not events & _WATCHABLE:
            raise ValueError(f"not a mask of I/O events: {events!r}")
        _check_callback(callback)
        rfd, wfd = _connector_fds(connector)
        if (
            (events & _READ and rfd is None)
            or (events & _WRITE and wfd is None)
            or not _waits(events, rfd, wfd)
        ):
            raise ValueError(f"{connector!r} has no side to watch for {events!r}")
        key = (id(connector),)
        for reg in self._index.get(key, ()):
            if reg.callback == callback:
                reg._add(int(events), oneshot, run_in_thread)
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
        mask = int(_check_mask(events))
        for reg in list(self._index.get((id(connector),), ())):
            if callback is not None and reg.callback != callback:
                continue
            left = reg._mask & ~mask
            if left & _WATCHABLE:
                reg._set_mask(left)
            else:
                reg.cancel()

    async def _run_io(self, reg: Registration) -> None:
        conn = reg.connector
        while True:  # once per mask and set of fds
            if (fds := _fds(conn)) is None:
                break
            mask = reg._mask
            if not (waits := _waits(mask, *fds)):
                break  # the watched side was shut down
            handle_wait: HandleWait | None = getattr(conn, "_scheduler_wait", None)
            # A connector that waits its own way says what it saw.
            classify = _classifier(waits) if handle_wait is None else _as_seen
            if len(waits) == 1:  # no nursery needed
                wait = partial(self._wait_fd, waits[0], handle_wait)
            else:
                wait = partial(self._wait_any, waits, handle_wait)
            seen: int | None = 0
            # One scope serves every wait with this mask (entering and leaving
            # one costs half a wait): _set_mask() cancels it only while the
            # task waits, so no callback runs in a cancelled scope.
            with trio.CancelScope() as scope:
                # A callback may change the mask or close a side.
                while mask == reg._mask and _fds(conn) == fds:
                    reg._wait_scope = scope
                    woke = await wait()
                    reg._wait_scope = None
                    if (seen := None if woke is None else classify(woke)) is None:
                        break  # an fd was closed
                    if scope.cancel_called:
                        break  # the mask changed with the wakeup queued: re-wait
                    if fired := seen & reg._mask:  # the mask as of now
                        await self._invoke(reg, _IO_EVENTS[fired], conn)
                        if reg._oneshot:
                            return
                    elif seen:
                        await trio.sleep(_IDLE_POLL)
            reg._wait_scope = None
            # A closed fd ends the registration, unless only one side went.
            if seen is None and _fds(conn) in (fds, None):
                break
        if reg._mask & _CLOSE:
            await self._invoke(reg, Events.CLOSE, conn)

    async def _wait_any(
        self, waits: list[tuple[int, bool]], handle_wait: HandleWait | None
    ) -> int | None:
        """Wait for the first ready fd: the directions that woke, None if closed."""
        woke: int | None = 0

        async def wait_one(key: tuple[int, bool], done: trio.CancelScope) -> None:
            nonlocal woke
            direction = await self._wait_fd(key, handle_wait)
            woke = None if direction is None or woke is None else woke | direction
            done.cancel()

        async with trio.open_nursery() as nursery:
            for key in waits:
                nursery.start_soon(wait_one, key, nursery.cancel_scope)
        return woke

    async def _wait_fd(
        self, key: tuple[int, bool], handle_wait: HandleWait | None = None
    ) -> int | None:
        """Wait until the fd is ready: READ or WRITE (or the bits *handle_wait*
        saw), None if closed locally.

        trio lets one task wait per fd and direction, so registrations
        watching the same one share each wait: one task waits, the others
        follow its round (an Event is made only once someone follows)."""
        while (rnd := self._rounds.get(key)) is not None:
            if rnd.followers is None:
                rnd.followers = trio.Event()
            await rnd.followers.wait()
            if rnd.woke is not None:  # else that waiter was cancelled: retry
                break
        else:  # nobody waits on it: lead a round
            self._rounds[key] = rnd = _Round()
            try:
                if handle_wait is None:
                    await (wait_readable if key[1] else wait_writable)(key[0])
                    rnd.woke = _READ if key[1] else _WRITE
                else:
                    rnd.woke = await handle_wait(key[1])
            except trio.ClosedResourceError:  # notify_closing(): closed locally
                rnd.woke = 0
            finally:
                del self._rounds[key]
                if rnd.followers is not None:
                    rnd.followers.set()
        return rnd.woke or None

    # -- timers ------------------------------------------------------------

    def schedule_once(
        self, delay: float, callback: Callback, *, run_in_thread: bool = False
    ) -> Registration:
        """Run ``callback`` once with TIMEOUT, ``delay`` seconds from now
        (``math.inf``: never, until cancelled)."""
        delay = _check_seconds(delay, "delay")
        _check_callback(callback)
        return self._timer(trio.current_time() + delay, 0, 1, callback, run_in_thread)

    def schedule_at(
        self, deadline: float, callback: Callback, *, run_in_thread: bool = False
    ) -> Registration:
        """Run ``callback`` once at ``deadline`` on the ``trio.current_time()``
        clock (immediately if it has passed; ``math.inf``: never)."""
        deadline = _check_seconds(deadline, "deadline", least=None)
        _check_callback(callback)
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
        interval = _check_seconds(interval, "interval", least=None)
        # inf would stop after one run: count runs could never all happen.
        if not 0 < interval < math.inf:
            raise ValueError(f"interval must be > 0 and finite, not {interval!r}")
        count = _check_count(count)
        delay = interval if first is None else _check_seconds(first, "first")
        _check_callback(callback)
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
        events = _check_mask(events)
        if not events or events & _BELOW_USER:
            raise ValueError(f"user events are Events.USER and above: {events!r}")
        _check_callback(callback)
        key = ("user", callback)
        for reg in self._index.get(key, ()):
            reg._add(int(events), False, run_in_thread)
            return reg
        reg = Registration(self, key, callback, events, None, False, run_in_thread)
        reg._send, receive = trio.open_memory_channel[Events](math.inf)
        return self._start(reg, self._run_user, reg, receive)

    def unregister_event(self, events: Events | int, callback: Callback) -> None:
        """Stop calling ``callback`` for ``events``; with none left it is dropped."""
        mask = int(_check_mask(events))
        for reg in list(self._index.get(("user", callback), ())):
            if left := reg._mask & ~mask:
                reg._set_mask(left)
            else:
                reg.cancel()

    def fire_events(self, events: Events | int) -> None:
        """Fire user events: each callback registered for any of them runs once,
        with the fired events it registered for. ValueError for system events."""
        events = _check_mask(events)
        if events & _BELOW_USER:
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
    if max_threads is not None and (
        isinstance(max_threads, bool) or not isinstance(max_threads, int)
    ):
        raise TypeError(f"max_threads must be an int or None, not {max_threads!r}")
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

"""The scheduler's I/O engine: one registration's watch on a connector's fds.

A registration's task runs :meth:`IOEngine.watch`: it waits with trio's
``wait_readable`` / ``wait_writable`` (or the connector's own
``_scheduler_wait``), tells what it saw, and calls the callback, level-
triggered, until the registration ends. trio lets one task wait per fd and
direction: a registration alone on one waits on trio directly; once there
are several, one leads each wait (a round) and the others follow it.

The hot path (alone on one fd and direction, READ or WRITE without CLOSE or
ERROR, a plain callback) costs what a hand-written ``wait_readable`` task
costs, plus the clock and the call: no poll (the wakeup says it all), no
re-read of the connector's fds (a close shows in the wait itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from inspect import isawaitable, iscoroutinefunction
from typing import Any, Protocol

import trio
from trio.lowlevel import wait_readable, wait_writable

from ._scheduler_events import CLOSE, ERROR, IO_EVENT_OF, READ, WRITE, Events
from ._scheduler_poll import Key, as_seen, classifier


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


SchedulerConnector.__module__ = "packeteer_trio.scheduler"  # documented there

#: ``connector._scheduler_wait``, where a connector has one.
HandleWait = Callable[[bool], Awaitable[int]]


class Watch(Protocol):
    """What the engine reads of a registration (``scheduler.Registration``)."""

    _mask: int  # may change at any time; a change cancels _wait_scope
    _wait_scope: trio.CancelScope | None  # set only while the task waits
    _cancelled: bool
    _solo: bool  # alone on its fd and direction: waits on trio directly
    _oneshot: bool
    _run_in_thread: bool
    callback: Callable[[float, Events, Any], object]
    connector: Any


#: ``invoke(registration, events, connector)``: the scheduler's full call
#: (cancellation check, ``now``, threads, awaitables).
Invoke = Callable[[Any, Events, Any], Awaitable[None]]


# After a wakeup carrying only conditions nobody asked for (CLOSE is watched
# while unread data is pending), trio cannot wait for the rest alone: poll at
# this pace instead of spinning.
_IDLE_POLL = 0.05
# Set in the result of a shared wait: another registration's callback may
# have taken what woke it (before this one ran, whether it led or followed).
_SHARED = 1 << 30
# What a watch loop tells the registration's loop.
_AGAIN, _CLOSED, _DONE = range(3)  # re-read mask and fds / an fd closed / end


def connector_fds(connector: object) -> tuple[int | None, int | None]:
    """The connector's fds, TypeError for something that is no connector."""
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


def check_watchable(events: int, connector: object) -> None:
    """ValueError unless *connector* has the sides *events* watches."""
    rfd, wfd = connector_fds(connector)
    if (
        (events & READ and rfd is None)
        or (events & WRITE and wfd is None)
        or not _waits(events, rfd, wfd)
    ):
        raise ValueError(f"{connector!r} has no side to watch for {Events(events)!r}")


def _waits(mask: int, rfd: int | None, wfd: int | None) -> list[Key]:
    waits = []
    if mask & READ and rfd is not None:
        waits.append((rfd, True))
    if mask & WRITE and wfd is not None:
        waits.append((wfd, False))
    if not waits and mask & (CLOSE | ERROR):
        # Hang-ups and errors wake readers, even on a pipe's write end.
        fd = rfd if rfd is not None else wfd
        waits += [] if fd is None else [(fd, True)]
    return waits


def _fds(conn: SchedulerConnector) -> tuple[int | None, int | None] | None:
    try:
        return conn._scheduler_fds()
    except trio.ClosedResourceError:
        return None


def _is_async(callback: object) -> bool:
    call = getattr(callback, "__call__", None)  # noqa: B004 - async __call__
    return iscoroutinefunction(callback) or iscoroutinefunction(call)


class _Round:
    """One wait on an fd and direction, which other registrations follow."""

    __slots__ = ("followers", "woke")

    def __init__(self) -> None:
        self.followers: trio.Event | None = None  # made by the first follower
        # The event bits seen; 0: closed locally; None: that waiter was cancelled.
        self.woke: int | None = None


class IOEngine:
    """The shared waits of one scheduler, and its registrations' watch loops."""

    def __init__(self, invoke: Invoke) -> None:
        self._invoke = invoke
        # Slots, fd * 2 + read (an int key hashes for free), of trio's waits:
        self._rounds: dict[int, _Round] = {}  # -> the shared wait led now
        self._users: dict[int, int] = {}  # -> how many registrations watch it
        self._solo: dict[int, Watch] = {}  # -> the one waiting alone on trio

    async def watch(self, reg: Watch) -> None:
        """Call ``reg``'s callback while its connector is ready, until the
        registration ends; CLOSE (if asked) once the connector is closed."""
        conn = reg.connector
        while True:  # once per mask and set of fds
            if (fds := _fds(conn)) is None:
                break
            mask = reg._mask
            if not (waits := _waits(mask, *fds)):
                break  # the watched side was shut down
            handle_wait: HandleWait | None = getattr(conn, "_scheduler_wait", None)
            if len(waits) == 1 and handle_wait is None:
                outcome = await self._watch_fd(reg, mask, fds, waits[0])
            else:
                outcome = await self._watch_any(reg, mask, fds, waits, handle_wait)
            if outcome == _DONE:
                return
            # A closed fd ends the registration, unless only one side went.
            if outcome == _CLOSED and _fds(conn) in (fds, None):
                break
        if reg._mask & CLOSE:
            await self._invoke(reg, Events.CLOSE, conn)

    def _join(self, slot: int) -> bool:
        """Count one more registration watching *slot*; True if it is alone.
        A second one makes the one that waited on trio directly (trio allows
        one waiter per fd and direction) join the shared rounds instead."""
        users = self._users.get(slot, 0)
        self._users[slot] = users + 1
        if users and (solo := self._solo.pop(slot, None)) is not None:
            solo._solo = False
            if (scope := solo._wait_scope) is not None:  # it waits right now
                solo._wait_scope = None  # re-wait, in a round
                scope.cancel()  # (its trio wait is gone when this returns)
        return not users

    def _leave(self, slot: int, reg: Watch) -> None:
        if self._solo.get(slot) is reg:
            del self._solo[slot]
        if users := self._users[slot] - 1:
            self._users[slot] = users
        else:
            del self._users[slot]

    async def _watch_fd(
        self, reg: Watch, mask: int, fds: tuple[int | None, int | None], key: Key
    ) -> int:
        """The hot loop: one fd and direction, while mask and fds hold. Alone
        on them, the task waits on trio directly; else in the shared rounds."""
        conn, (fd, read) = reg.connector, key
        bit = READ if read else WRITE
        ready = IO_EVENT_OF[bit]
        # Without CLOSE or ERROR asked, READ means "a read will not block" and
        # WRITE "a write will not block", which is what trio's wakeup says
        # (it wakes a reader for data, the end of file, a hang-up or an
        # error alike): a wait made alone needs no poll to tell. A shared
        # one does, as another registration's callback may have run first.
        trusted = not mask & (CLOSE | ERROR)
        classify: Callable[[int], int | None] | None = None
        # Trusted with a plain callback, a registration costs what a
        # hand-written wait_readable task costs: the fds are not re-read
        # around each call, as a local close shows in the wait itself
        # (notify_closing() while waiting; else the next wait fails on the
        # closed fd and re-reads). Otherwise they are, before the call (a
        # close may have raced the wakeup) and after it.
        callback, oneshot = reg.callback, reg._oneshot
        exact = not trusted or reg._run_in_thread or _is_async(callback)
        wait_fd = wait_readable if read else wait_writable
        now = trio.lowlevel.current_clock().current_time  # = trio.current_time
        slot = fd * 2 + read
        reg._solo = self._join(slot)
        if reg._solo:
            self._solo[slot] = reg
        # One scope serves every wait with this mask (entering and leaving
        # one costs half a wait): _set_mask() cancels it only while the task
        # waits, so no callback runs in a cancelled scope.
        try:
            with trio.CancelScope() as scope:
                while mask == reg._mask:
                    reg._wait_scope = scope
                    if reg._solo:
                        try:
                            await wait_fd(fd)
                        except trio.ClosedResourceError:  # notify_closing()
                            return _CLOSED
                        except (OSError, trio.BusyResourceError):
                            # A stale fd: EBADF once closed, EPERM for a file
                            # that took its number. Else it is the caller's.
                            if _fds(conn) == fds:
                                raise
                            return _AGAIN
                        woke = bit
                    else:
                        woke = await self._wait_fd(key)
                    if reg._wait_scope is None:
                        return _AGAIN  # the mask changed with the wakeup queued
                    reg._wait_scope = None
                    if not woke:
                        return _CLOSED
                    events = ready
                    if woke != bit or not trusted:  # shared, or CLOSE/ERROR asked
                        if classify is None:
                            classify = classifier([key])
                        if (seen := classify(woke)) is None:
                            return _CLOSED
                        # Trusted, anything seen means the call will not block
                        # (nothing: the leader's callback took it); else what
                        # was asked.
                        fired = (bit if seen else 0) if trusted else seen & mask
                        if not fired:
                            if seen:
                                await trio.sleep(_IDLE_POLL)
                            continue
                        events = IO_EVENT_OF[fired]
                    if exact:
                        if _fds(conn) != fds:
                            return _AGAIN
                        await self._invoke(reg, events, conn)
                    else:
                        # A wakeup may already be queued when the registration
                        # gets cancelled; its flag is cheaper than a checkpoint.
                        if reg._cancelled:
                            return _DONE
                        # `is not None` first: most callbacks are plain, and cheap.
                        if (result := callback(now(), events, conn)) is None or not (
                            isawaitable(result)
                        ):
                            if oneshot:
                                return _DONE
                            continue
                        await result  # other tasks ran: re-read below
                    if oneshot:
                        return _DONE
                    if _fds(conn) != fds:
                        return _AGAIN  # the callback closed a side, or all
        finally:
            self._leave(slot, reg)
        return _AGAIN

    async def _watch_any(
        self,
        reg: Watch,
        mask: int,
        fds: tuple[int | None, int | None],
        waits: list[Key],
        handle_wait: HandleWait | None,
    ) -> int:
        """Several waits at once (READ | WRITE), or a connector's own wait:
        always in the shared rounds, always classified and re-read."""
        conn = reg.connector
        # A connector that waits its own way says what it saw.
        classify = classifier(waits) if handle_wait is None else as_seen
        if len(waits) == 1:  # no nursery needed
            wait = partial(self._wait_fd, waits[0], handle_wait)
        else:
            wait = partial(self._wait_any, waits, handle_wait)
        slots = [fd * 2 + read for fd, read in waits]
        for slot in slots:
            self._join(slot)
        try:
            with trio.CancelScope() as scope:  # as in _watch_fd
                while mask == reg._mask and _fds(conn) == fds:
                    reg._wait_scope = scope
                    woke = await wait()
                    if reg._wait_scope is None:
                        return _AGAIN  # the mask changed with the wakeup queued
                    reg._wait_scope = None
                    if not woke or (seen := classify(woke)) is None:
                        return _CLOSED
                    if fired := seen & reg._mask:  # the mask as of now
                        await self._invoke(reg, IO_EVENT_OF[fired], conn)
                        if reg._oneshot:
                            return _DONE
                    elif seen:
                        await trio.sleep(_IDLE_POLL)
        finally:
            for slot in slots:
                self._leave(slot, reg)
        return _AGAIN

    async def _wait_any(self, waits: list[Key], handle_wait: HandleWait | None) -> int:
        """Wait for the first ready fd: the directions that woke, 0 if closed."""
        woke, closed = 0, False

        async def wait_one(key: Key, done: trio.CancelScope) -> None:
            nonlocal woke, closed
            if direction := await self._wait_fd(key, handle_wait):
                woke |= direction
            else:
                closed = True
            done.cancel()

        async with trio.open_nursery() as nursery:
            for key in waits:
                nursery.start_soon(wait_one, key, nursery.cancel_scope)
        return 0 if closed else woke

    async def _wait_fd(self, key: Key, handle_wait: HandleWait | None = None) -> int:
        """Wait until the fd is ready: READ or WRITE (or the bits *handle_wait*
        saw), with _SHARED; 0 if closed locally.

        The first registration to wait on an fd and direction leads a round;
        the others follow it (an Event is made only once someone follows)."""
        slot = key[0] * 2 + key[1]
        while (rnd := self._rounds.get(slot)) is not None:
            if rnd.followers is None:
                rnd.followers = trio.Event()
            await rnd.followers.wait()
            if rnd.woke is not None:  # else that waiter was cancelled: retry
                return rnd.woke | _SHARED if rnd.woke else 0
        self._rounds[slot] = rnd = _Round()
        woke = None
        try:
            if handle_wait is None:
                await (wait_readable if key[1] else wait_writable)(key[0])
                woke = READ if key[1] else WRITE
            else:
                woke = await handle_wait(key[1])
        except trio.ClosedResourceError:  # notify_closing(): closed locally
            woke = 0
        finally:
            rnd.woke = woke
            del self._rounds[slot]
            if rnd.followers is not None:
                rnd.followers.set()
        return woke | _SHARED if woke else 0

"""Scheduler tests, ported from packeteer's test/public/test_scheduler.cpp.

packeteer's ``process_events(timeout)`` becomes ``trio.sleep`` under the
autojump clock (timers) or ``wait_all_tasks_blocked`` (I/O and user events:
it returns only once no task can run and no fd is ready).
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import wait_all_tasks_blocked

from packeteer_trio.scheduler import (
    IO_EVENTS,
    Events,
    Registration,
    Scheduler,
    open_scheduler,
)

pytestmark = pytest.mark.trio

# CLOSE and ERROR on descriptors come from poll()'s POLLHUP and POLLERR.
needs_poll = pytest.mark.posix_only(
    reason="on Windows the scheduler sees READ and WRITE of a socket only (no poll())"
)

EVENT_1 = Events.USER
EVENT_2 = Events(Events.USER << 1)
EVENT_3 = Events(Events.USER << 2)


class Recorder:
    """packeteer's test_callback: counts calls, remembers the last mask."""

    def __init__(self, *, reached: int = 0) -> None:
        self.called = 0
        self.mask = Events(0)
        self.masks: list[Events] = []
        self.times: list[float] = []
        self.connectors: list[Any] = []
        self.reached = trio.Event()  # set once `called` reaches `reached`
        self._target = reached

    def __call__(self, now: float, events: Events, conn: Any) -> None:
        self.called += 1
        self.mask = events
        self.masks.append(events)
        self.times.append(now)
        self.connectors.append(conn)
        if self.called == self._target:
            self.reached.set()

    def take(self) -> tuple[int, Events]:
        """(calls, last mask), resetting the mask like ASSERT_CALLBACK."""
        result, self.mask = (self.called, self.mask), Events(0)
        return result


async def reached(rec: Recorder) -> None:
    """Wait for ``rec`` to reach its target; a deadlock fails instead of hanging."""
    with trio.fail_after(10):
        await rec.reached.wait()


class Pipe:
    """A bare pipe connector: the read end and write end of one os.pipe().

    On Windows, where trio waits only for sockets, the two ends are the two
    sockets of a socketpair (one only read, one only written)."""

    def __init__(self) -> None:
        self.rfd: int | None
        self.wfd: int | None
        self._ends: dict[int, socket.socket] = {}
        if sys.platform == "win32":
            ends = socket.socketpair()
            for end in ends:
                end.setblocking(False)
                self._ends[end.fileno()] = end
            self.rfd, self.wfd = (end.fileno() for end in ends)
        else:
            self.rfd, self.wfd = os.pipe()
            os.set_blocking(self.rfd, False)
            os.set_blocking(self.wfd, False)
        self.closed = False

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self.closed:
            raise trio.ClosedResourceError
        return self.rfd, self.wfd

    def write(self, data: bytes = b"\0") -> None:
        assert self.wfd is not None
        if self._ends:
            assert self._ends[self.wfd].send(data) == len(data)
        else:
            assert os.write(self.wfd, data) == len(data)

    def read(self) -> bytes:
        assert self.rfd is not None
        if self._ends:
            return self._ends[self.rfd].recv(200)
        return os.read(self.rfd, 200)

    def close_end(self, which: str) -> None:
        fd = self.rfd if which == "read" else self.wfd
        assert fd is not None
        if trio.lowlevel.in_trio_run():  # fixture teardown runs outside trio
            trio.lowlevel.notify_closing(fd)
        if self._ends:
            self._ends.pop(fd).close()
        else:
            os.close(fd)
        if which == "read":
            self.rfd = None
        else:
            self.wfd = None

    def close(self) -> None:
        for end in ("read", "write"):
            if getattr(self, end[0] + "fd") is not None:
                self.close_end(end)
        self.closed = True


class Sock:
    """A socket connector over one end of a trio socketpair."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        fd = self.sock.fileno()
        if fd == -1:
            raise trio.ClosedResourceError
        return fd, fd


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close()


@pytest.fixture
def socks() -> Iterator[tuple[Sock, Sock]]:
    a, b = trio.socket.socketpair()
    with a, b:
        yield Sock(a), Sock(b)


# -- timers (autojump clock: each sleep jumps straight to the deadline) --------


async def test_delayed_callback(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder()
    async with open_scheduler() as sched:
        start = trio.current_time()
        reg = sched.schedule_once(0.001, rec)
        await trio.sleep(0.020)
        assert rec.take() == (1, Events.TIMEOUT)
        assert rec.times == [start + 0.001]
        assert rec.connectors == [None]
        assert reg.done and not reg.cancelled


async def test_timed_callback(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder()
    async with open_scheduler() as sched:
        deadline = trio.current_time() + 0.05
        sched.schedule_at(deadline, rec)
        await trio.sleep(0.049)
        assert rec.called == 0
        await trio.sleep(0.051)
        assert rec.take() == (1, Events.TIMEOUT)
        assert rec.times == [deadline]


async def test_schedule_at_in_the_past_runs_now(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    async with open_scheduler() as sched:
        sched.schedule_at(trio.current_time() - 5, rec)
        await wait_all_tasks_blocked()
        assert rec.called == 1


async def test_repeat_callback(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder()
    async with open_scheduler() as sched:
        start = trio.current_time()
        reg = sched.schedule(0.02, rec, first=0, count=3)
        await trio.sleep(10)
        assert rec.take() == (3, Events.TIMEOUT)
        assert rec.times == pytest.approx([start, start + 0.02, start + 0.04])
        assert reg.done


async def test_infinite_callback_and_unschedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    other = Recorder()
    async with open_scheduler() as sched:
        a = sched.schedule(0.05, rec, first=0)
        b = sched.schedule(0.05, rec, first=0.01)  # a second timer, same callback
        kept = sched.schedule(0.05, other)
        await trio.sleep(0.12)  # a: 0, .05, .10; b: .01, .06, .11
        assert rec.take() == (6, Events.TIMEOUT)
        sched.unschedule(rec)
        assert a.cancelled and b.cancelled and not kept.cancelled
        await trio.sleep(1)
        assert rec.take() == (6, Events(0))
        assert other.called > 10


async def test_delayed_repeat_callback(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder()
    async with open_scheduler() as sched:
        start = trio.current_time()
        reg = sched.schedule(0.02, rec, first=0.05)
        await trio.sleep(0.02)
        assert rec.called == 0
        await trio.sleep(0.04)  # t = 0.06
        assert rec.take() == (1, Events.TIMEOUT)
        await trio.sleep(0.02)  # t = 0.08: the run at 0.07 keeps the rate
        assert rec.times == pytest.approx([start + 0.05, start + 0.07])
        reg.cancel()


async def test_default_first_is_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    async with open_scheduler() as sched:
        start = trio.current_time()
        sched.schedule(1, rec, count=2)
        await trio.sleep(5)
        assert rec.times == pytest.approx([start + 1, start + 2])


async def test_schedule_rejects_bad_arguments() -> None:
    rec = Recorder()
    async with open_scheduler() as sched:
        with pytest.raises(ValueError, match="count"):
            sched.schedule(1, rec, count=0)
        with pytest.raises(ValueError, match="interval"):
            sched.schedule(0, rec)
        with pytest.raises(ValueError, match="first"):
            sched.schedule(1, rec, first=-1)
        with pytest.raises(ValueError, match="delay"):
            sched.schedule_once(-1, rec)


class Unhashable:
    def __eq__(self, other: object) -> bool:  # and so no __hash__
        return self is other

    def __call__(self, now: float, events: Events, conn: Any) -> None:
        pass


NAN, INF = math.nan, math.inf
ONCE, AT, EVERY = "schedule_once", "schedule_at", "schedule"

# (method, its keyword arguments, the error, the argument its message names).
# A missing callback is a Recorder; the call is untyped, as from untyped code.
BAD_TIMER_CALLS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    (ONCE, {"delay": NAN}, ValueError, "delay"),
    (ONCE, {"delay": -1}, ValueError, "delay"),
    (ONCE, {"delay": -INF}, ValueError, "delay"),
    (ONCE, {"delay": "1"}, TypeError, "delay"),
    (ONCE, {"delay": True}, TypeError, "delay"),
    (AT, {"deadline": NAN}, ValueError, "deadline"),
    (AT, {"deadline": None}, TypeError, "deadline"),
    (EVERY, {"interval": 1, "first": NAN}, ValueError, "first"),
    (EVERY, {"interval": 1, "first": -1}, ValueError, "first"),
    (EVERY, {"interval": 1, "first": "0"}, TypeError, "first"),
    (EVERY, {"interval": NAN}, ValueError, "interval"),
    (EVERY, {"interval": INF}, ValueError, "interval"),
    (EVERY, {"interval": 0}, ValueError, "interval"),
    (EVERY, {"interval": -1}, ValueError, "interval"),
    (EVERY, {"interval": "1"}, TypeError, "interval"),
    (EVERY, {"interval": 1, "count": 0}, ValueError, "count"),
    (EVERY, {"interval": 1, "count": -1}, ValueError, "count"),
    (EVERY, {"interval": 1, "count": 2.5}, TypeError, "count"),
    (EVERY, {"interval": 1, "count": NAN}, TypeError, "count"),
    (EVERY, {"interval": 1, "count": True}, TypeError, "count"),
    (ONCE, {"delay": 1, "callback": object()}, TypeError, "callback"),
    (AT, {"deadline": 1, "callback": None}, TypeError, "callback"),
    (EVERY, {"interval": 1, "callback": "cb"}, TypeError, "callback"),
    (ONCE, {"delay": 1, "callback": Unhashable()}, TypeError, "hashable"),
]


def _any(value: object) -> Any:
    return value


def _shown(value: object) -> str:  # stable test ids: no addresses
    plain = isinstance(value, (int, float, str, type(None)))
    return repr(value) if plain else type(value).__name__


@pytest.mark.parametrize(
    ("method", "kwargs", "error", "name"),
    BAD_TIMER_CALLS,
    ids=[f"{m}-{'-'.join(map(_shown, k.values()))}" for m, k, _, _ in BAD_TIMER_CALLS],
)
async def test_bad_timer_arguments_fail_at_the_call(
    method: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    name: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A bad value is refused where it is passed, naming the argument; it used
    to be accepted (NaN) and then escape `async with`, cancelling the rest."""
    kwargs = {"callback": Recorder(), **kwargs}
    sibling = Recorder()
    async with open_scheduler() as sched:
        sched.schedule(interval=1, callback=sibling, count=3)
        with pytest.raises(error, match=name):
            getattr(sched, method)(**kwargs)
        await trio.sleep(10)
    assert sibling.called == 3  # nothing was cancelled


async def test_good_timer_arguments_still_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()
    async with open_scheduler() as sched:
        start = trio.current_time()
        sched.schedule(_any(Fraction(1, 2)), rec, first=0, count=2)
        sched.schedule_at(deadline=-INF, callback=rec)  # passed: runs now
        never = [
            sched.schedule_once(delay=INF, callback=rec),
            sched.schedule_at(deadline=INF, callback=rec),
            sched.schedule(interval=1, callback=rec, first=INF),
        ]
        await trio.sleep(1000)
        assert sorted(rec.times) == pytest.approx([start, start, start + 0.5])
        assert not any(reg.done for reg in never)  # inf: never, like trio.sleep


# -- user events ---------------------------------------------------------------


async def test_user_callback() -> None:
    source1, source2 = Recorder(), Recorder()

    async def fire(sched: Scheduler, events: Events) -> None:
        sched.fire_events(events)
        await wait_all_tasks_blocked()  # process_events(0)

    async with open_scheduler() as sched:
        sched.register_event(EVENT_1 | EVENT_2 | EVENT_3, source1)
        sched.register_event(EVENT_2 | EVENT_3, source2)

        await fire(sched, EVENT_1)
        assert source1.take() == (1, EVENT_1)
        assert source2.take() == (0, 0)
        await fire(sched, EVENT_2)
        assert source1.take() == (2, EVENT_2)
        assert source2.take() == (1, EVENT_2)
        await fire(sched, EVENT_3)
        assert source1.take() == (3, EVENT_3)
        assert source2.take() == (2, EVENT_3)
        await fire(sched, EVENT_1 | EVENT_2)
        assert source1.take() == (4, EVENT_1 | EVENT_2)
        assert source2.take() == (3, EVENT_2)
        await fire(sched, EVENT_2 | EVENT_3)
        assert source1.take() == (5, EVENT_2 | EVENT_3)
        assert source2.take() == (4, EVENT_2 | EVENT_3)
        await fire(sched, EVENT_1 | EVENT_3)
        assert source1.take() == (6, EVENT_1 | EVENT_3)
        assert source2.take() == (5, EVENT_3)

        sched.unregister_event(EVENT_2, source1)

        await fire(sched, EVENT_1)
        assert source1.take() == (7, EVENT_1)
        assert source2.take() == (5, 0)
        await fire(sched, EVENT_2)
        assert source1.take() == (7, 0)
        assert source2.take() == (6, EVENT_2)
        await fire(sched, EVENT_3)
        assert source1.take() == (8, EVENT_3)
        assert source2.take() == (7, EVENT_3)
        await fire(sched, EVENT_1 | EVENT_2)
        assert source1.take() == (9, EVENT_1)
        assert source2.take() == (8, EVENT_2)
        await fire(sched, EVENT_2 | EVENT_3)
        assert source1.take() == (10, EVENT_3)
        assert source2.take() == (9, EVENT_2 | EVENT_3)
        await fire(sched, EVENT_1 | EVENT_3)
        assert source1.take() == (11, EVENT_1 | EVENT_3)
        assert source2.take() == (10, EVENT_3)

        # fire_events() refuses system events, alone or mixed in.
        with pytest.raises(ValueError):
            sched.fire_events(Events.READ)
        with pytest.raises(ValueError):
            sched.fire_events(EVENT_1 | Events.TIMEOUT)
        await wait_all_tasks_blocked()
        assert source1.called == 11 and source2.called == 10
        assert source1.connectors == [None] * 11


async def test_user_events_register_merges_and_queue_each_firing() -> None:
    rec = Recorder()
    async with open_scheduler() as sched:
        a = sched.register_event(EVENT_1, rec)
        b = sched.register_event(EVENT_2, rec)
        assert a is b and a.events == EVENT_1 | EVENT_2
        sched.fire_events(EVENT_1 | EVENT_2)  # once, with both
        sched.fire_events(EVENT_2)  # a second firing is a second run
        sched.fire_events(EVENT_3)  # nobody registered
        await wait_all_tasks_blocked()
        assert rec.masks == [EVENT_1 | EVENT_2, EVENT_2]
        sched.unregister_event(EVENT_1 | EVENT_2, rec)
        assert a.cancelled
        sched.fire_events(EVENT_1)
        await wait_all_tasks_blocked()
        assert rec.called == 2


async def test_high_user_bits_survive_unregister() -> None:
    high = Events(Events.USER << 20)
    rec = Recorder()
    async with open_scheduler() as sched:
        sched.register_event(EVENT_1 | high, rec)
        sched.unregister_event(EVENT_1, rec)
        sched.fire_events(high)
        await wait_all_tasks_blocked()
        assert rec.masks == [high]


async def test_register_event_rejects_system_events() -> None:
    async with open_scheduler() as sched:
        with pytest.raises(ValueError):
            sched.register_event(Events.READ | EVENT_1, Recorder())
        with pytest.raises(ValueError):
            sched.register_event(0, Recorder())


# -- I/O -------------------------------------------------------------------------


async def test_io_callback(pipe: Pipe) -> None:
    source1 = Recorder()
    source2 = Recorder(reached=5)
    async with open_scheduler() as sched:
        sched.register_connector(Events.READ, pipe, source1)
        sched.register_connector(Events.WRITE, pipe, source2)
        # The pipe is always writable: WRITE keeps firing.
        await reached(source2)
        sched.unregister_connector(pipe, Events.WRITE, source2)
        await wait_all_tasks_blocked()
        assert source2.take()[1] == Events.WRITE
        assert set(source2.masks) == {Events.WRITE}
        assert set(source2.connectors) == {pipe}
        # Nothing was written: no READ.
        assert source1.take() == (0, 0)
        sched.unregister_connector(pipe, Events.READ, source1)

        called_before_read = -1
        reads: list[bytes] = []

        async def reading(now: float, events: Events, conn: Any) -> None:
            nonlocal called_before_read
            rec(now, events, conn)
            if called_before_read < 0:
                called_before_read = rec.called
                await trio.lowlevel.checkpoint()  # async callback: may await
                reads.append(pipe.read())

        rec = Recorder()
        sched.register_connector(Events.READ, pipe, reading)
        await wait_all_tasks_blocked()
        assert rec.called == 0
        pipe.write(b"\0")
        await wait_all_tasks_blocked()
        # Once before the read, and never again: the level went down.
        assert called_before_read == 1
        assert reads == [b"\0"]
        assert rec.take() == (1, Events.READ)


async def test_read_is_level_triggered_and_does_not_starve(pipe: Pipe) -> None:
    rec = Recorder()
    async with open_scheduler() as sched:
        sched.register_connector(Events.READ, pipe, rec)  # never reads
        pipe.write()
        # Each run goes through a real wait, so this task keeps its turn.
        for _ in range(20):
            await trio.lowlevel.checkpoint()
        assert 5 <= rec.called <= 40
        assert set(rec.masks) == {Events.READ}
        pipe.read()
        await wait_all_tasks_blocked()
        calls = rec.called
        await wait_all_tasks_blocked()
        assert rec.called == calls


async def test_io_callback_remove_all_callbacks(pipe: Pipe) -> None:
    source1, source2 = Recorder(reached=3), Recorder(reached=3)
    async with open_scheduler() as sched:
        # Two watchers of the same fd and direction share trio's one wait.
        r1 = sched.register_connector(Events.WRITE, pipe, source1)
        r2 = sched.register_connector(Events.WRITE, pipe, source2)
        await reached(source1)
        await reached(source2)
        sched.unregister_connector(pipe, Events.WRITE)
        s1, s2 = source1.called, source2.called
        await wait_all_tasks_blocked()
        assert (source1.called, source2.called) == (s1, s2)
        assert r1.cancelled and r2.cancelled


async def test_io_callback_remove_completely(socks: tuple[Sock, Sock]) -> None:
    sock = socks[0]
    source1, source2 = Recorder(reached=3), Recorder(reached=3)
    async with open_scheduler() as sched:
        sched.register_connector(Events.WRITE, sock, source1)
        sched.register_connector(Events.READ | Events.WRITE, sock, source2)
        await reached(source1)
        await reached(source2)
        sched.unregister_connector(sock)
        s1, s2 = source1.called, source2.called
        await wait_all_tasks_blocked()
        assert (source1.called, source2.called) == (s1, s2)


async def test_io_callback_registration_simultaneous(
    socks: tuple[Sock, Sock],
) -> None:
    sock, peer = socks
    rec = Recorder(reached=3)
    async with open_scheduler() as sched:
        sched.register_connector(Events.READ | Events.WRITE, sock, rec)
        await reached(rec)
        assert set(rec.masks) == {Events.WRITE}  # no READ without data
        n = rec.called
        await peer.sock.send(b"x")
        with trio.fail_after(5):
            while not rec.mask & Events.READ:
                await trio.lowlevel.checkpoint()
        assert rec.masks[n:][-1] == Events.READ | Events.WRITE


async def test_io_registration_sequence_merges(pipe: Pipe) -> None:
    rec = Recorder(reached=3)
    async with open_scheduler() as sched:
        a = sched.register_connector(Events.READ, pipe, rec)
        b = sched.register_connector(Events.WRITE, pipe, rec)
        assert a is b and a.events == Events.READ | Events.WRITE
        await reached(rec)  # the merged WRITE reached the waiting task
        assert set(rec.masks) == {Events.WRITE}
        pipe.write()
        with trio.fail_after(5):  # WRITE keeps firing, now with READ
            while Events.READ | Events.WRITE not in rec.masks:
                await trio.lowlevel.checkpoint()
        sched.unregister_connector(pipe, Events.WRITE, rec)
        assert a.events == Events.READ and not a.cancelled
        n = rec.called
        for _ in range(5):
            await trio.lowlevel.checkpoint()
        assert rec.called > n and set(rec.masks[n:]) == {Events.READ}
        # Dropping WRITE wins even when a wakeup is already queued: try it at
        # every phase of the registration's loop.
        for spin in range(30):
            sched.register_connector(Events.WRITE, pipe, rec)
            for _ in range(spin % 5):
                await trio.lowlevel.checkpoint()
            sched.unregister_connector(pipe, Events.WRITE, rec)
            n = rec.called
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            assert set(rec.masks[n:]) <= {Events.READ}


async def test_io_callback_oneshot(pipe: Pipe) -> None:
    spinning, once = Recorder(reached=2), Recorder()
    async with open_scheduler() as sched:
        sched.register_connector(Events.WRITE, pipe, spinning)
        reg = sched.register_connector(Events.WRITE, pipe, once, oneshot=True)
        await reached(spinning)
        await reached(spinning)
        for _ in range(10):
            await trio.lowlevel.checkpoint()
        assert once.take() == (1, Events.WRITE)
        assert reg.done and not reg.cancelled


@needs_poll
async def test_close_when_peer_closes_pipe(pipe: Pipe) -> None:
    rec = Recorder(reached=1)
    async with open_scheduler() as sched:
        reg = sched.register_connector(Events.READ | Events.CLOSE, pipe, rec)
        await wait_all_tasks_blocked()
        assert rec.called == 0
        pipe.close_end("write")
        await reached(rec)
        assert rec.masks[0] == Events.CLOSE
        reg.cancel()


@needs_poll
async def test_close_only_registration_sees_socket_peer_close(
    socks: tuple[Sock, Sock],
) -> None:
    sock, peer = socks
    rec = Recorder(reached=1)
    async with open_scheduler() as sched:
        sched.register_connector(Events.CLOSE, sock, rec, oneshot=True)
        await wait_all_tasks_blocked()
        assert rec.called == 0
        peer.sock.close()
        await reached(rec)
        assert rec.masks == [Events.CLOSE]


@needs_poll
async def test_close_only_with_unread_data_pending(
    autojump_clock: trio.testing.MockClock, socks: tuple[Sock, Sock]
) -> None:
    # The fd is readable but only CLOSE is wanted: trio cannot wait for the
    # hang-up alone, so the registration polls instead of spinning.
    sock, peer = socks
    rec = Recorder(reached=1)
    async with open_scheduler() as sched:
        sched.register_connector(Events.CLOSE, sock, rec, oneshot=True)
        await peer.sock.send(b"unread")
        await trio.sleep(1)
        assert rec.called == 0
        peer.sock.close()
        await reached(rec)
        assert rec.masks == [Events.CLOSE]


@needs_poll
async def test_error_when_pipe_reader_goes_away(pipe: Pipe) -> None:
    rec = Recorder(reached=1)
    async with open_scheduler() as sched:
        # Watch only errors on the write end: no WRITE spin, just the error.
        sched.register_connector(Events.ERROR, pipe, rec, oneshot=True)
        await wait_all_tasks_blocked()
        assert rec.called == 0
        pipe.close_end("read")
        await reached(rec)
        assert rec.masks == [Events.ERROR]


async def test_local_close_delivers_close_and_ends(pipe: Pipe) -> None:
    rec = Recorder(reached=1)
    async with open_scheduler() as sched:
        reg = sched.register_connector(Events.READ | Events.CLOSE, pipe, rec)
        await wait_all_tasks_blocked()
        pipe.close()  # notify_closing wakes the waiting registration
        await reached(rec)
        await wait_all_tasks_blocked()
        assert rec.masks == [Events.CLOSE] and rec.connectors == [pipe]
        assert reg.done
        with pytest.raises(trio.ClosedResourceError):
            sched.register_connector(Events.READ, pipe, rec)


async def test_callback_closing_its_connector_ends_registration(pipe: Pipe) -> None:
    rec = Recorder()

    def close_it(now: float, events: Events, conn: Any) -> None:
        rec(now, events, conn)
        if events & Events.WRITE:
            pipe.close()

    async with open_scheduler() as sched:
        reg = sched.register_connector(Events.WRITE | Events.CLOSE, pipe, close_it)
        await wait_all_tasks_blocked()
        assert rec.masks == [Events.WRITE, Events.CLOSE]
        assert reg.done


async def test_register_connector_validates(pipe: Pipe) -> None:
    write_only = Pipe()
    write_only.close_end("read")
    async with open_scheduler() as sched:
        with pytest.raises(ValueError):
            sched.register_connector(Events.TIMEOUT, pipe, Recorder())
        with pytest.raises(ValueError):
            sched.register_connector(Events.OPEN, pipe, Recorder())
        with pytest.raises(ValueError, match="no side"):
            sched.register_connector(Events.READ, write_only, Recorder())
        cb = Recorder()
        sched.register_connector(Events.WRITE, pipe, cb)
        with pytest.raises(ValueError, match="options"):
            sched.register_connector(Events.READ, pipe, cb, oneshot=True)
        sched.unregister_connector(pipe)
    write_only.close()


async def test_register_connector_type_errors(pipe: Pipe) -> None:
    """The wrong kind of argument is a TypeError saying what is accepted."""
    sibling = Recorder()
    async with open_scheduler() as sched:
        sched.register_event(EVENT_1, sibling)
        with pytest.raises(TypeError, match="connector must be a packeteer_trio"):
            sched.register_connector(Events.READ, _any(object()), Recorder())
        with pytest.raises(TypeError, match="connector must be"):
            sched.register_connector(Events.READ, _any(pipe.rfd), Recorder())
        with pytest.raises(TypeError, match="events must be an Events mask"):
            sched.register_connector(_any("READ"), pipe, Recorder())
        with pytest.raises(TypeError, match="events must be an Events mask"):
            sched.register_connector(_any(1.0), pipe, Recorder())
        with pytest.raises(TypeError, match="callback must be callable"):
            sched.register_connector(Events.READ, pipe, _any(None))
        with pytest.raises(TypeError, match="events"):
            sched.unregister_connector(pipe, events=_any("READ"))
        with pytest.raises(TypeError, match="events"):
            sched.register_event(_any(None), Recorder())
        with pytest.raises(TypeError, match="callback"):
            sched.register_event(EVENT_1, _any(42))
        with pytest.raises(TypeError, match="events"):
            sched.unregister_event(_any("x"), sibling)
        with pytest.raises(TypeError, match="events"):
            sched.fire_events(_any(None))
        sched.fire_events(EVENT_1)  # the scheduler still works
        await wait_all_tasks_blocked()
    assert sibling.called == 1
    with pytest.raises(TypeError, match="max_threads"):
        async with open_scheduler(max_threads=_any(1.5)):
            pass  # pragma: no cover


# -- callbacks, threads, cancellation, errors --------------------------------------


async def test_async_callbacks(autojump_clock: trio.testing.MockClock) -> None:
    log: list[tuple[str, float]] = []

    async def slow(now: float, events: Events, conn: Any) -> None:
        log.append(("start", trio.current_time()))
        await trio.sleep(1)
        log.append(("end", trio.current_time()))

    async with open_scheduler() as sched:
        start = trio.current_time()
        sched.schedule_once(1, slow)
        sched.register_event(EVENT_1, slow)
        sched.fire_events(EVENT_1)
        await trio.sleep(5)
    # Two awaiting callbacks overlap: the scheduler does not wait for one.
    assert sorted(log) == [
        ("end", start + 1),
        ("end", start + 2),
        ("start", start),
        ("start", start + 1),
    ]


async def test_error_propagates_and_cancels_siblings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sibling_cancelled = False
    after_body = False

    async def long_running(now: float, events: Events, conn: Any) -> None:
        nonlocal sibling_cancelled
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            sibling_cancelled = True
            raise

    def boom(now: float, events: Events, conn: Any) -> None:
        raise KeyError("boom")

    ticks = Recorder()
    with pytest.raises(KeyError, match="boom"):
        async with open_scheduler() as sched:
            sched.schedule_once(0, long_running)
            ticker = sched.schedule(0.1, ticks)
            sched.schedule_once(1, boom)
            await trio.sleep(10)
            after_body = True
    assert sibling_cancelled and not after_body
    assert 9 <= ticks.called <= 10 and ticker.done


async def test_body_exception_comes_out_bare() -> None:
    with pytest.raises(LookupError):
        async with open_scheduler() as sched:
            sched.schedule(1, Recorder())
            raise LookupError


async def test_leaving_the_block_cancels_everything(pipe: Pipe) -> None:
    async with open_scheduler() as sched:
        regs = [
            sched.schedule(1, Recorder()),
            sched.register_event(EVENT_1, Recorder()),
            sched.register_connector(Events.READ, pipe, Recorder()),
        ]
    assert all(r.cancelled and r.done for r in regs)
    with pytest.raises(RuntimeError):
        sched.schedule_once(0, Recorder())


async def test_run_in_thread_runs_off_the_trio_thread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # packeteer's parallel_callback_with_threads: two blocking callbacks run
    # at the same time on two different threads.
    barrier = threading.Barrier(2, timeout=10)
    tids: list[int] = []

    def blocking(now: float, events: Events, conn: Any) -> None:
        tids.append(threading.get_ident())
        barrier.wait()  # both must be running at once to get past this

    async with open_scheduler(max_threads=2) as sched:
        assert sched.thread_limiter.total_tokens == 2
        sched.schedule_once(0.05, blocking, run_in_thread=True)
        sched.schedule_once(0.05, blocking, run_in_thread=True)
        await trio.sleep(1)
    assert len(set(tids)) == 2
    assert threading.get_ident() not in tids


async def test_run_in_thread_io_and_async_rejected(pipe: Pipe) -> None:
    tids: list[int] = []

    def blocking(now: float, events: Events, conn: Any) -> None:
        tids.append(threading.get_ident())

    async def coro(now: float, events: Events, conn: Any) -> None:
        pass

    async with open_scheduler(max_threads=1) as sched:
        with pytest.raises(TypeError):
            sched.schedule_once(0, coro, run_in_thread=True)
        sched.register_connector(
            Events.WRITE, pipe, blocking, oneshot=True, run_in_thread=True
        )
        with trio.fail_after(10):
            while not tids:
                await trio.sleep(0.001)
    assert tids[0] != threading.get_ident()
    with pytest.raises(ValueError):
        async with open_scheduler(max_threads=0):
            pass


async def test_cancel_handle_while_its_callback_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered = trio.Event()
    outcome: list[str] = []
    reg: Registration | None = None

    async def waits(now: float, events: Events, conn: Any) -> None:
        entered.set()
        try:
            await trio.sleep(100)
            outcome.append("finished")
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    async with open_scheduler() as sched:
        reg = sched.schedule(1, waits, first=0)
        other = sched.schedule(1, Recorder())
        await entered.wait()
        assert not reg.cancelled
        reg.cancel()
        await wait_all_tasks_blocked()
        assert outcome == ["cancelled"] and reg.cancelled and reg.done
        await trio.sleep(5)
        assert outcome == ["cancelled"]  # never ran again
        assert not other.done  # the rest carries on


async def test_plain_callback_cancelling_itself_finishes_its_run(
    pipe: Pipe,
) -> None:
    runs: list[Events] = []

    def once(now: float, events: Events, conn: Any) -> None:
        runs.append(events)
        handle.cancel()
        runs.append(Events(0))  # still runs to the end: no checkpoint in between

    async with open_scheduler() as sched:
        handle = sched.register_connector(Events.WRITE, pipe, once)
        await wait_all_tasks_blocked()
    assert runs == [Events.WRITE, Events(0)]


async def test_events_values() -> None:
    assert (Events.READ, Events.WRITE, Events.ERROR, Events.OPEN) == (1, 2, 4, 8)
    assert (Events.CLOSE, Events.TIMEOUT, Events.USER) == (16, 128, 1 << 15)
    assert IO_EVENTS == 1 | 2 | 4 | 8 | 16


# -- with the package's real anon:// connector -------------------------------------


async def test_anon_io_callback() -> None:
    packeteer_trio = pytest.importorskip("packeteer_trio")
    stream = await packeteer_trio.connect("anon://")
    writes = Recorder(reached=5)
    got: list[bytes] = []
    before_read: list[int] = []

    async def reading(now: float, events: Events, conn: Any) -> None:
        before_read.append(len(got))
        got.append(await conn.receive_some())

    async with stream, open_scheduler() as sched:
        sched.register_connector(Events.READ, stream, reading)
        sched.register_connector(Events.WRITE, stream, writes)
        await reached(writes)
        sched.unregister_connector(stream, Events.WRITE)
        await wait_all_tasks_blocked()
        assert got == []
        await stream.send_all(b"hello")
        await wait_all_tasks_blocked()
        assert got == [b"hello"] and before_read == [0]


async def test_anon_close_ends_registration() -> None:
    packeteer_trio = pytest.importorskip("packeteer_trio")
    stream = await packeteer_trio.connect("anon://")
    rec = Recorder(reached=1)
    async with open_scheduler() as sched:
        reg = sched.register_connector(Events.READ | Events.CLOSE, stream, rec)
        await wait_all_tasks_blocked()
        await stream.aclose()
        await reached(rec)
        await wait_all_tasks_blocked()
        assert rec.masks == [Events.CLOSE] and reg.done


async def test_anon_send_eof_keeps_the_read_side_watched() -> None:
    packeteer_trio = pytest.importorskip("packeteer_trio")
    stream = await packeteer_trio.connect("anon://")
    rec = Recorder(reached=3)
    async with stream, open_scheduler() as sched:
        await stream.send_all(b"x")
        reg = sched.register_connector(Events.READ | Events.WRITE, stream, rec)
        await reached(rec)
        assert Events.READ | Events.WRITE in rec.masks
        await stream.send_eof()  # the write fd is gone, the read fd is not
        n = rec.called
        for _ in range(5):
            await trio.lowlevel.checkpoint()
        assert rec.called > n and set(rec.masks[n:]) == {Events.READ}
        assert not reg.done
        assert await stream.receive_some() == b"x"

"""The scheduler's I/O engine (``_scheduler_io``): what its fast path must not lose.

A registration alone on its fd and direction waits on trio directly and,
without CLOSE or ERROR asked, calls a plain callback without polling or
re-reading the connector's fds. These tests pin down what that path still
has to get right: a second registration joining it, a follower never called
for data the leader took, READ at the end of file, a close by the callback
or by another task, and ``now`` on trio's clock.
"""

from __future__ import annotations

import select
import tempfile
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import wait_all_tasks_blocked

from packeteer_trio.scheduler import Events, open_scheduler

from .test_scheduler import Pipe, Recorder, Sock, pipe, reached, socks

__all__ = ["pipe", "socks"]  # the fixtures, used by name below

pytestmark = pytest.mark.trio


def readable(fd: int | None) -> bool:
    assert fd is not None
    return bool(select.select([fd], [], [], 0)[0])


async def test_read_only_sees_a_pipe_end_of_file(pipe: Pipe) -> None:
    # READ means "a read will not block": at the end of file too, also on a
    # pipe, where poll() reports only POLLHUP (the classification poll used
    # to drop that wakeup and re-check every 50 ms, never calling back).
    rec = Recorder(reached=3)
    got: list[bytes] = []

    def reading(now: float, events: Events, conn: Any) -> None:
        rec(now, events, conn)
        got.append(pipe.read())

    async with open_scheduler() as sched:
        reg = sched.register_connector(Events.READ, pipe, reading)
        await wait_all_tasks_blocked()
        assert rec.called == 0
        pipe.close_end("write")
        await reached(rec)  # level-triggered: again and again, like a socket
        reg.cancel()
    assert set(rec.masks) == {Events.READ}
    assert set(got) == {b""}


async def test_second_registration_joins_one_waiting_alone(
    socks: tuple[Sock, Sock],
) -> None:
    sock, peer = socks
    alone, joining = Recorder(reached=1), Recorder(reached=1)
    both = Recorder(reached=1)
    async with open_scheduler() as sched:
        first = sched.register_connector(Events.READ, sock, alone)
        await wait_all_tasks_blocked()  # it waits on trio directly
        sched.register_connector(Events.READ, sock, joining)
        await wait_all_tasks_blocked()  # no BusyResourceError out of here
        assert (alone.called, joining.called) == (0, 0)
        # One waiting for READ | WRITE joins too (WRITE keeps firing).
        sched.register_connector(Events.READ | Events.WRITE, sock, both)
        await reached(both)
        assert set(both.masks) == {Events.WRITE}
        await peer.sock.send(b"x")
        await reached(alone)
        await reached(joining)
        with trio.fail_after(10):
            while Events.READ | Events.WRITE not in both.masks:
                await trio.lowlevel.checkpoint()
        sched.unregister_connector(sock, callback=both)
        assert set(alone.masks) == set(joining.masks) == {Events.READ}
        # The one left keeps watching once the first is gone.
        first.cancel()
        await sock.sock.recv(10)
        await wait_all_tasks_blocked()
        n = joining.called
        await peer.sock.send(b"y")
        with trio.fail_after(10):
            while joining.called == n:
                await trio.lowlevel.checkpoint()
        sched.unregister_connector(sock)


async def test_follower_is_not_called_for_data_the_leader_took(pipe: Pipe) -> None:
    # Two READ registrations share one wait: whichever reads first takes
    # the byte, and the other must not be called for it (its plain
    # callback's read would fail with EAGAIN).
    reads: list[bytes] = []
    checked: list[bool] = []

    def reader(now: float, events: Events, conn: Any) -> None:
        reads.append(pipe.read())

    def checker(now: float, events: Events, conn: Any) -> None:
        checked.append(readable(pipe.rfd))

    async with open_scheduler() as sched:
        sched.register_connector(Events.READ, pipe, checker)
        sched.register_connector(Events.READ, pipe, reader)
        await wait_all_tasks_blocked()
        for _ in range(20):
            pipe.write()
            await wait_all_tasks_blocked()
        sched.unregister_connector(pipe)
    assert reads == [b"\0"] * 20
    assert all(checked), checked


@pytest.mark.parametrize("events", [Events.WRITE, Events.WRITE | Events.CLOSE])
async def test_plain_callback_closing_its_connector_ends_it(
    pipe: Pipe, events: Events
) -> None:
    # Without CLOSE asked nothing re-reads the fds after the call: the next
    # wait, on the closed fd, fails and that re-reads them.
    rec = Recorder()

    def close_it(now: float, events: Events, conn: Any) -> None:
        rec(now, events, conn)
        if events & Events.WRITE:
            pipe.close()

    async with open_scheduler() as sched:
        reg = sched.register_connector(events, pipe, close_it)
        with trio.fail_after(10):
            while not reg.done:
                await trio.lowlevel.checkpoint()
    assert rec.masks == [Events.WRITE, Events.CLOSE][: bin(events).count("1")]


@pytest.mark.parametrize(
    ("events", "kind"),
    [
        (Events.READ | Events.CLOSE, "plain"),
        (Events.READ, "async"),
        (Events.READ, "plain"),
    ],
)
async def test_close_racing_a_queued_wakeup(events: Events, kind: str) -> None:
    # Another task closes the connector in the same batch as the wakeup of
    # its registration, before or after it (trio orders a batch at random).
    # With CLOSE asked, or an async callback, no callback sees it closed;
    # else, like a hand-written wait_readable task, the callback may run
    # once on it. Either way the registration ends, without an error.
    seen: list[tuple[Events, bool]] = []
    for _ in range(20):
        conn = Pipe()
        go = trio.Event()

        def plain(now: float, events: Events, c: Any, conn: Pipe = conn) -> None:
            seen.append((events, conn.closed))
            if events & Events.READ and not conn.closed:
                conn.read()

        async def asynchronous(now: float, events: Events, c: Any) -> None:
            plain(now, events, c)

        async def closer(conn: Pipe = conn, go: trio.Event = go) -> None:
            await go.wait()
            conn.close()

        async with trio.open_nursery() as nursery, open_scheduler() as sched:
            nursery.start_soon(closer)
            callback = plain if kind == "plain" else asynchronous
            reg = sched.register_connector(events, conn, callback)
            await wait_all_tasks_blocked()
            conn.write()
            go.set()
            with trio.fail_after(10):
                while not reg.done:
                    await trio.lowlevel.checkpoint()
        if events & Events.CLOSE:
            assert seen[-1] == (Events.CLOSE, True)
    if events & Events.CLOSE or kind == "async":
        assert all(not closed for ev, closed in seen if ev & Events.READ), seen
    assert {ev for ev, _ in seen} <= {Events.READ, events & Events.CLOSE}


async def test_now_is_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder(reached=1)
    pipe = Pipe()
    try:
        async with open_scheduler() as sched:
            await trio.sleep(1000)  # the mock clock, far from perf_counter
            start = trio.current_time()
            sched.register_connector(Events.WRITE, pipe, rec, oneshot=True)
            await reached(rec)
            assert start <= rec.times[0] <= trio.current_time()
    finally:
        pipe.close()


@pytest.mark.posix_only(
    reason="a file descriptor to wait for: POSIX (trio waits for sockets on Windows)"
)
async def test_a_wait_that_fails_on_the_connectors_own_fd_raises() -> None:
    # A failing wait re-reads the fds (the callback may have closed them);
    # when the connector still names that fd the error is real: a regular
    # file cannot be waited for (EPERM).
    with tempfile.TemporaryFile() as file:

        class FileConnector:
            def _scheduler_fds(self) -> tuple[int | None, int | None]:
                return file.fileno(), None

        with pytest.raises(OSError):
            async with open_scheduler() as sched:
                sched.register_connector(Events.READ, FileConnector(), Recorder())
                await trio.sleep_forever()

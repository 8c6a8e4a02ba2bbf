"""The scheduler's READ callbacks against a hand-written trio task doing the same wait.

A connected pair of local:// streams, A and B. Each time A becomes readable,
the callback reads what is there and writes one byte from B, which makes A
readable again: one epoll round and one callback per turn. The hand-written
peer is ``while True: await wait_readable(A); recv; send``: the same
syscalls, so the ratio is what a registration (its cancel scope, shared
wait, readiness poll and callback call) costs per event.
"""

from __future__ import annotations

import trio

import packeteer_trio as pt
from packeteer_trio.scheduler import Events, open_scheduler

from ._common import Config, Row, Timer, measure, rows_from, temp_dir, temp_path

CALLBACKS = 10_000


async def _pair(path: str) -> tuple[pt.SocketStream, pt.SocketStream]:
    async with await pt.listen(f"local://{path}") as listener:
        a = await pt.connect(listener.url)
        b = await listener.accept()
    assert isinstance(a, pt.SocketStream) and isinstance(b, pt.SocketStream)
    return a, b


async def with_scheduler(path: str, count: int) -> float:
    a, b = await _pair(path)
    done = trio.Event()
    seen = 0
    receive, send = a.socket.recv, b.socket.send

    def callback(now: float, events: Events, connector: object) -> None:
        nonlocal seen
        receive(4096)
        seen += 1
        if seen < count:
            send(b"x")
        else:
            done.set()

    async with a, b, open_scheduler() as scheduler:
        with Timer() as timer:
            scheduler.register_connector(Events.READ, a, callback)
            send(b"x")
            await done.wait()
        assert seen == count
    return count / timer.seconds


async def hand_written(path: str, count: int) -> float:
    a, b = await _pair(path)
    receive, send = a.socket.recv, b.socket.send
    fd = a.fileno()

    async def watcher(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        seen = 0
        while True:
            await trio.lowlevel.wait_readable(fd)
            receive(4096)
            seen += 1
            if seen < count:
                send(b"x")
            else:
                return

    async with a, b:
        with Timer() as timer:
            async with trio.open_nursery() as nursery:
                await nursery.start(watcher)
                send(b"x")
    return count / timer.seconds


def run(config: Config) -> list[Row]:
    count = config.work(CALLBACKS, 100)
    with temp_dir() as directory:
        ours_path = temp_path(directory, "sched.sock")
        task_path = temp_path(directory, "task.sock")
        results = measure(
            config,
            {
                "register_connector(READ)": lambda: trio.run(
                    with_scheduler, ours_path, count
                ),
                "trio task: wait_readable": lambda: trio.run(
                    hand_written, task_path, count
                ),
            },
            label="scheduler",
        )
    return rows_from(
        "scheduler",
        "READ events handled (callback reads, peer writes)",
        "calls/s",
        results,
        "register_connector(READ)",
        [("trio task: wait_readable", 0.95)],  # issue 20
    )

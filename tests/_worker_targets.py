"""Targets that test_workers.py runs in worker processes (importable by name)."""

from __future__ import annotations

import os
import time

import trio

import packeteer_trio as pt


async def _pid_echo(stream: pt.Stream) -> None:
    """Say who answers (the worker's pid, and the client's pid where the OS
    tells), then echo until the end of file."""
    async with stream:
        client = 0
        if isinstance(stream, pt.SocketStream) and stream.url.scheme == "local":
            client = stream.peer_credentials()[0]
        await stream.send_all(f"{os.getpid()} {client}\n".encode())
        while data := await stream.receive_some():
            await stream.send_all(data)


async def pid_echo(
    url: pt.URL, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
) -> None:
    await pt.serve(url, _pid_echo, task_status=task_status)


async def busy_pid_echo(
    url: pt.URL,
    busy: float,
    *,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """As pid_echo, but each connection first keeps the whole process busy
    for *busy* seconds (CPU-bound work, as a real server has): meanwhile its
    siblings take the next connections from the shared socket."""

    async def handler(stream: pt.Stream) -> None:
        time.sleep(busy)  # blocks this worker's event loop on purpose
        await _pid_echo(stream)

    await pt.serve(url, handler, task_status=task_status)


async def pid_datagrams(
    url: pt.URL, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
) -> None:
    """Answer each datagram with this worker's pid."""
    async with await pt.open_datagram(url) as sock:
        task_status.started(sock)
        while True:
            _, sender = await sock.receive_from()
            await sock.send_to(str(os.getpid()).encode(), sender)


async def fails_at_start(
    url: pt.URL, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
) -> None:
    raise RuntimeError("this worker cannot start")


async def crashes_once_up(
    url: pt.URL, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serves, then dies at once: a worker that always crashes."""
    task_status.started()
    await trio.sleep(0)
    raise RuntimeError("crashed")


async def ignores_sigterm(
    url: pt.URL, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serves, and shields itself from being stopped: only SIGKILL ends it."""
    task_status.started()
    with trio.CancelScope(shield=True):
        await trio.sleep_forever()


async def wedged(
    url: pt.URL, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serves, then blocks its event loop for good, so that it can no longer
    notice anything (a closed lifeline, SIGTERM); says so on stdout first."""
    task_status.started()
    await trio.sleep(0.2)  # let the worker report that it serves
    print(f"wedged {os.getpid()}", flush=True)
    while True:
        time.sleep(3600)

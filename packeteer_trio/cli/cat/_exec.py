"""``cat --exec CMD``: a child process per connection, its stdin and stdout
on the stream (nc -e, socat EXEC:).

The child's stdin and stdout are pipes that we copy to and from the stream
(so any scheme works, TLS included, and ``-v`` can count the bytes); its
stderr is ours. The peer's end of file closes the child's stdin; the
session ends when the child has exited and its output is sent, followed by
an end of file. A broken stream, ``-w`` expiring or cat being cancelled
ends the child: SIGTERM, SIGKILL after KILL_AFTER seconds, and it is always
reaped (no zombies) and its pipes closed (no leaked descriptors).
A direction the stream cannot carry (a FIFO end, ``--send-only``,
``--receive-only``) is not piped: the child's stdin is then /dev/null, its
stdout cat's own.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
from functools import partial
from typing import TYPE_CHECKING

import trio

from .._log import Log
from .._streams import Silence, can_receive, can_send, can_send_eof

if TYPE_CHECKING:
    from ._stream import Connection, Counts

KILL_AFTER = 2.0  # seconds between SIGTERM and SIGKILL


async def exec_session(
    argv: list[str],
    conn: Connection,
    args: argparse.Namespace,
    counts: Counts,
    log: Log,
) -> None:
    receive = await conn.receive()
    feed = can_receive(receive) and not args.send_only  # peer -> child's stdin
    drain = can_receive(receive) and args.send_only  # peer -> nowhere
    answer = can_send(conn.send) and not args.receive_only  # child's stdout -> peer
    idle = Silence(args.wait)
    tag = f"#{conn.number} {shlex.join(argv)}"
    process: trio.Process | None = None
    try:
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                partial(
                    trio.run_process,
                    argv,
                    stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                    stdout=subprocess.PIPE if answer else None,
                    check=False,
                    deliver_cancel=_stop,
                )
            )
            log.detail(f"{tag}: started (pid {process.pid})")
            try:
                with idle.scope:
                    async with trio.open_nursery() as pumps:
                        if feed:
                            pumps.start_soon(_to_child, receive, process, counts, idle)
                        elif drain:
                            pumps.start_soon(_drain, receive, counts, idle)
                        if answer:
                            await _from_child(process, conn, counts, idle)
                        elif can_send(conn.send) and can_send_eof(conn.send):
                            await conn.send.send_eof()  # --receive-only
                        await process.wait()
                        pumps.cancel_scope.cancel()  # the peer may still send
                idle.check(str(conn.send.url))
            finally:
                # However we leave: the child's pipes closed, and if it still
                # runs, run_process ends it (_stop) and reaps it.
                for pipe in (process.stdin, process.stdout):
                    if pipe is not None:
                        await trio.aclose_forcefully(pipe)
                nursery.cancel_scope.cancel()
    finally:
        if process is not None and process.returncode is not None:
            log.detail(f"{tag}: {_status(process.returncode)}")


async def _to_child(
    receive: trio.abc.ReceiveStream,
    process: trio.Process,
    counts: Counts,
    idle: Silence,
) -> None:
    """The peer's bytes to the child's stdin; the peer's end of file closes it."""
    assert process.stdin is not None
    while data := await receive.receive_some():
        counts.received += len(data)
        idle.touch()
        try:
            await process.stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The child closed its stdin (or exited): the rest has no reader.
            await _drain(receive, counts, idle)
            return
    await process.stdin.aclose()


async def _drain(
    receive: trio.abc.ReceiveStream, counts: Counts, idle: Silence
) -> None:
    """Read and drop until the peer's end of file (closing a socket with
    unread data would reset the connection, losing what we sent)."""
    while data := await receive.receive_some():
        counts.received += len(data)
        idle.touch()


async def _from_child(
    process: trio.Process, conn: Connection, counts: Counts, idle: Silence
) -> None:
    """The child's stdout to the peer, then an end of file where it can."""
    assert process.stdout is not None
    while data := await process.stdout.receive_some():
        idle.touch()
        await conn.send.send_all(data)
        counts.sent += len(data)
    if can_send_eof(conn.send):
        await conn.send.send_eof()


async def _stop(process: trio.Process) -> None:
    """run_process's deliver_cancel: SIGTERM, then SIGKILL if it lingers."""
    try:
        process.terminate()
        await trio.sleep(KILL_AFTER)
        process.kill()
    except OSError:
        pass  # already gone


def _status(returncode: int) -> str:
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"

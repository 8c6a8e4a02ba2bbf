"""Readiness waits for asyncio loops without ``add_reader`` (Windows' proactor).

asyncio's default loop on Windows, ``ProactorEventLoop``, completes I/O
instead of reporting readiness, so it has no ``add_reader``/``add_writer``.
anyio then watches sockets with ``select()`` in a thread of its own, and that
thread (anyio 4.16, and its main branch) loses wakeups: after ``select()``
returns it acts on each ready descriptor by number. When meanwhile the wait
for that descriptor ended (cancelled, or the listener closed), its socket was
closed, a new socket got the same number (Windows reuses a socket handle
value at once, POSIX the lowest free descriptor) and a new wait registered
it, the stale result removes the new registration: that wait never returns.
docs/platforms.md has the evidence.

This is the same design with one change: each wait is its own registration
object, and the thread acts on a ready descriptor only if the registration
it selected on is still the one registered, so a stale result can neither
wake nor remove a newer wait (the next ``select()`` reports that one if its
socket is ready). The thread is never left dead: a ``select()`` error wakes
the waits on the descriptors it concerns (their next operation reports it).
``select()`` watches at most 512 sockets on Windows (as anyio's thread).
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import sys
import threading
from collections.abc import Coroutine
from typing import Any

import anyio

READ, WRITE = 0, 1
_VERBS = ("reading from", "writing to")


def needed() -> bool:
    """Whether the running asyncio loop lacks ``add_reader`` (false under trio)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return type(loop).add_reader is asyncio.AbstractEventLoop.add_reader


class _Wait:
    """One task's wait for one direction of one descriptor."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[bool] = loop.create_future()


def _resolve(future: asyncio.Future[bool], ready: bool) -> None:
    if not future.done():  # else cancelled meanwhile: nobody to tell
        future.set_result(ready)


def _fail(future: asyncio.Future[bool], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _unusable(fd: int) -> bool:
    try:
        select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return True
    return False


class _SelectorThread:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: tuple[dict[int, _Wait], dict[int, _Wait]] = ({}, {})
        self._wake_send, self._wake_receive = socket.socketpair()
        self._wake_send.setblocking(False)
        self._wake_receive.setblocking(False)
        thread = threading.Thread(
            target=self._run, name="packeteer_trio selector", daemon=True
        )
        thread.start()

    def _wake(self) -> None:
        try:
            self._wake_send.send(b"\0")
        except BlockingIOError:
            pass  # a wakeup is pending already

    def add(self, direction: int, fd: int, wait: _Wait) -> None:
        with self._lock:
            table = self._tables[direction]
            if fd in table:
                raise anyio.BusyResourceError(_VERBS[direction])
            table[fd] = wait
        self._wake()

    def remove(self, direction: int, fd: int, wait: _Wait) -> None:
        # Only our own registration: the thread may have removed it already
        # (it woke us) and a newer wait may own the number now. No wakeup: a
        # select() still watching the descriptor will ignore what it reports.
        with self._lock:
            table = self._tables[direction]
            if table.get(fd) is wait:
                del table[fd]

    def notify_closing(self, fd: int) -> None:
        with self._lock:
            waits = [table.pop(fd) for table in self._tables if fd in table]
        for wait in waits:
            wait.loop.call_soon_threadsafe(_resolve, wait.future, False)
        if waits:
            self._wake()

    def _run(self) -> None:
        wake = self._wake_receive.fileno()
        while True:
            with self._lock:
                readers, writers = dict(self._tables[READ]), dict(self._tables[WRITE])
            try:
                # Windows reports a failed connect() in the exception set.
                failing = list(writers) if sys.platform == "win32" else []
                readable, writable, failed = select.select(
                    [wake, *readers], list(writers), failing
                )
            except (OSError, ValueError) as exc:
                # Mostly a socket closed after the snapshot above (its wait
                # had ended: the next snapshot lacks it); else one closed
                # while still watched. Either way the descriptors at fault
                # count as ready; an error none of them explains fails all.
                readable = [fd for fd in readers if _unusable(fd)]
                writable = [fd for fd in writers if _unusable(fd)]
                failed = []
                if not readable and not writable:
                    self._fail_all(exc)
                    continue
            if wake in readable:
                try:
                    while self._wake_receive.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            fired: list[_Wait] = []
            with self._lock:
                for direction, selected, ready in (
                    (READ, readers, readable),
                    (WRITE, writers, [*writable, *failed]),
                ):
                    table = self._tables[direction]
                    for fd in ready:
                        wait = selected.get(fd)
                        if wait is not None and table.get(fd) is wait:
                            del table[fd]
                            fired.append(wait)
            for wait in fired:
                try:
                    wait.loop.call_soon_threadsafe(_resolve, wait.future, True)
                except RuntimeError:
                    pass  # that loop is closed

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            waits = [wait for table in self._tables for wait in table.values()]
            for table in self._tables:
                table.clear()
        for wait in waits:
            try:
                wait.loop.call_soon_threadsafe(_fail, wait.future, exc)
            except RuntimeError:
                pass


_thread: _SelectorThread | None = None
_thread_lock = threading.Lock()


def _selector() -> _SelectorThread:
    global _thread
    with _thread_lock:
        if _thread is None:
            _thread = _SelectorThread()
        return _thread


def _forget_after_fork() -> None:  # pragma: no cover - POSIX test loops only
    global _thread
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


async def _wait(direction: int, fd: int) -> None:
    wait = _Wait(asyncio.get_running_loop())
    selector = _selector()
    selector.add(direction, fd, wait)
    try:
        ready = await wait.future
    finally:
        selector.remove(direction, fd, wait)
    if not ready:
        raise anyio.ClosedResourceError


# Plain functions handing back the coroutine: one coroutine per wait.
def wait_readable(fd: int) -> Coroutine[Any, Any, None]:
    """Wait until *fd* is readable; ClosedResourceError after notify_closing."""
    return _wait(READ, fd)


def wait_writable(fd: int) -> Coroutine[Any, Any, None]:
    """Wait until *fd* is writable (or its connect failed)."""
    return _wait(WRITE, fd)


def notify_closing(fd: int) -> None:
    """Wake the waits on *fd* with ClosedResourceError (call before closing)."""
    if _thread is not None:
        _thread.notify_closing(fd)

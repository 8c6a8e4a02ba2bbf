"""The anyio face on asyncio loops without add_reader (Windows' proactor loop).

There, sockets are watched by ``select()`` in a thread
(packeteer_trio/_selector_thread.py). These tests run on every platform, on
an asyncio loop that lacks add_reader as the proactor loop does, through the
waits the face binds (``current_backend()``) and through the face itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import pytest

from packeteer_trio import anyio_compat as pa
from packeteer_trio._anyio._backend import current_backend

from .conftest import NoReaderLoop


@contextlib.contextmanager
def gated(
    loop: asyncio.AbstractEventLoop, count: int
) -> Iterator[list[tuple[threading.Event, threading.Event]]]:
    """Hold the selector thread inside *loop*'s call_soon_threadsafe.

    Each gate (taken in order) stops one call from another thread: its
    ``entered`` event is set, then the call waits for its ``release``. That
    freezes the thread while it hands a select() result over to the loop.
    """
    owner = threading.get_ident()
    gates = [(threading.Event(), threading.Event()) for _ in range(count)]
    pending = list(gates)
    original = loop.call_soon_threadsafe

    def call_soon_threadsafe(*args: Any, **kwargs: Any) -> asyncio.Handle:
        if threading.get_ident() != owner and pending:
            entered, release = pending.pop(0)
            entered.set()
            release.wait(10)
        return original(*args, **kwargs)

    vars(loop)["call_soon_threadsafe"] = call_soon_threadsafe
    try:
        yield gates
    finally:
        pending.clear()
        del vars(loop)["call_soon_threadsafe"]
        for _, release in gates:
            release.set()


async def wait_on(wait: Callable[[int], Awaitable[None]], fd: int) -> None:
    await wait(fd)


NO_READER = pytest.param(("asyncio", {"loop_factory": NoReaderLoop}), id="noreader")
pytestmark = pytest.mark.anyio


async def until(event: threading.Event) -> None:
    with anyio.fail_after(10):
        while not event.is_set():
            await anyio.sleep(0.001)


async def settle() -> None:
    """Let the tasks just started run up to their waits."""
    for _ in range(3):
        await anyio.sleep(0)


@contextlib.contextmanager
def udp_sockets(
    count: int, readable_by: socket.socket | None = None
) -> Iterator[list[socket.socket]]:
    """*count* bound UDP sockets (always writable); with *readable_by*, a
    datagram from it waits in each. One descriptor each, made one by one:
    they take the lowest free numbers (POSIX) or the handles freed last."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            if readable_by is not None:
                readable_by.sendto(b"x", sock.getsockname())
        yield socks
    finally:
        for sock in socks:
            sock.close()


@contextlib.contextmanager
def numbered_udp_sockets(
    numbers: set[int], readable_by: socket.socket | None = None
) -> Iterator[list[socket.socket]]:
    """UDP sockets with exactly these descriptor numbers, as udp_sockets()
    makes them. POSIX gives the lowest free numbers at once; Windows reuses
    freed handles in an order of its own, so sockets with other numbers are
    held open (at most 64) until the freed ones come back."""
    kept: list[socket.socket] = []
    spare: list[socket.socket] = []
    try:
        while len(kept) < len(numbers):
            assert len(spare) < 64, f"precondition: numbers {numbers} not reused"
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            (kept if sock.fileno() in numbers else spare).append(sock)
        for sock in kept:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            if readable_by is not None:
                readable_by.sendto(b"x", sock.getsockname())
        yield kept
    finally:
        for sock in kept + spare:
            sock.close()


@pytest.mark.parametrize("anyio_backend", [NO_READER])
@pytest.mark.parametrize("direction", ["read", "write"])
async def test_stale_select_result_keeps_the_wait_on_a_reused_number(
    direction: str,
) -> None:
    """A select() result is still being handed over while its waits end,
    their sockets close and new sockets with the same numbers are waited on:
    the new waits are woken all the same. (anyio's own thread removed a new
    wait's registration here: the accept or connect waiting on it hung.)"""
    backend = current_backend()
    wait = backend.wait_readable if direction == "read" else backend.wait_writable

    async def cancellable_wait(fd: int, scope: anyio.CancelScope) -> None:
        with scope:
            await wait(fd)

    with gated(asyncio.get_running_loop(), 2) as (first, second):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender_or_none = sender if direction == "read" else None
            with udp_sockets(1, sender_or_none) as [dummy]:
                async with anyio.create_task_group() as group:
                    # The thread hands the dummy's result over and is held.
                    group.start_soon(wait_on, wait, dummy.fileno())
                    await until(first[0])
                    # So its next select() reports both old sockets at once,
                    # and it is held handing over the first.
                    with udp_sockets(2, sender_or_none) as old:
                        numbers = {sock.fileno() for sock in old}
                        scopes = [anyio.CancelScope() for _ in old]
                        for sock, scope in zip(old, scopes, strict=True):
                            group.start_soon(cancellable_wait, sock.fileno(), scope)
                        await settle()
                        first[1].set()
                        await until(second[0])
                        for scope in scopes:
                            scope.cancel()
                        await settle()
                    with numbered_udp_sockets(numbers, sender_or_none) as new:
                        with anyio.fail_after(10):  # a lost wakeup hangs here
                            async with anyio.create_task_group() as waits:
                                for sock in new:
                                    waits.start_soon(wait_on, wait, sock.fileno())
                                await settle()
                                second[1].set()


@pytest.mark.parametrize("anyio_backend", [NO_READER])
async def test_notify_closing_wakes_the_wait_with_closed_resource_error() -> None:
    backend = current_backend()
    outcome: list[BaseException] = []

    async def waiter(fd: int) -> None:
        try:
            await backend.wait_readable(fd)
        except anyio.ClosedResourceError as exc:
            outcome.append(exc)

    with udp_sockets(1) as [sock], anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(waiter, sock.fileno())
            await settle()
            backend.notify_closing(sock.fileno())
    assert len(outcome) == 1


@pytest.mark.parametrize("anyio_backend", [NO_READER])
async def test_a_second_wait_is_busy_and_a_cancelled_one_is_gone() -> None:
    backend = current_backend()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        udp_sockets(1) as [sock],
    ):
        async with anyio.create_task_group() as group:
            group.start_soon(wait_on, backend.wait_readable, sock.fileno())
            await settle()
            with pytest.raises(anyio.BusyResourceError):
                await backend.wait_readable(sock.fileno())
            group.cancel_scope.cancel()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(wait_on, backend.wait_readable, sock.fileno())
                await settle()
                sender.sendto(b"x", sock.getsockname())


@pytest.mark.parametrize("anyio_backend", [NO_READER])
async def test_a_socket_closed_while_watched_wakes_its_wait() -> None:
    """Closed without notify_closing: select() fails on it, and the thread
    wakes that wait (its next operation reports the error) and goes on."""
    backend = current_backend()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        udp_sockets(1) as [other],
    ):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(wait_on, backend.wait_readable, sock.fileno())
                await settle()
                sock.close()
                # A wait on another socket wakes the thread, which selects
                # again, on the closed one too.
                group.start_soon(wait_on, backend.wait_readable, other.fileno())
                await settle()
                sender.sendto(b"x", other.getsockname())


@pytest.mark.parametrize("anyio_backend", [NO_READER])
async def test_the_face_connects_accepts_and_reports_refusal() -> None:
    async with await pa.listen("tcp4://127.0.0.1:0") as listener:
        accepted: list[anyio.abc.ByteStream] = []

        async def accept() -> None:
            accepted.append(await listener.accept())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(accept)
                client = await pa.connect(listener.url)
            async with client, accepted[0] as server:
                await client.send(b"ping")
                assert await server.receive() == b"ping"
        url = listener.url
    with pytest.raises(ConnectionRefusedError), anyio.fail_after(10):
        await pa.connect(url)

"""Waits, checkpoints and attributes shared by the anyio face's classes.

Objects look the backend up once, when they are made: the hot paths then call
plain functions instead of asking anyio which event loop runs on every call.
Under anyio's trio backend those are trio's own ``trio.lowlevel`` functions
(cheaper than going through anyio, and the reason the lean loop beats
anyio's own trio streams); under asyncio they are anyio's, except the
readiness waits on a loop without ``add_reader`` (Windows' proactor loop),
which are :mod:`.._selector_thread`'s (anyio's own lose wakeups there).
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable
from typing import Any, final

import anyio
import anyio.abc
import anyio.lowlevel
import trio

from .. import _selector_thread
from .._io import Face
from .._url import URL


@final
class PacketeerAttribute(anyio.TypedAttributeSet):
    """Typed attributes that packeteer_trio's anyio objects add to anyio's.

    ``stream.extra(PacketeerAttribute.url)`` is the same as ``stream.url``:
    the connector's URL, scheme narrowed and port resolved.
    """

    url: URL = anyio.typed_attribute()


async def _trio_wait_readable(fd: int) -> None:
    # trio raises its own ClosedResourceError when notify_closing wakes us;
    # anyio code expects anyio's (which is a different class).
    try:
        await trio.lowlevel.wait_readable(fd)
    except trio.ClosedResourceError:
        raise anyio.ClosedResourceError from None
    except trio.BusyResourceError:
        raise anyio.BusyResourceError("reading from") from None


async def _trio_wait_writable(fd: int) -> None:
    try:
        await trio.lowlevel.wait_writable(fd)
    except trio.ClosedResourceError:
        raise anyio.ClosedResourceError from None
    except trio.BusyResourceError:
        raise anyio.BusyResourceError("writing to") from None


@dataclasses.dataclass(frozen=True)
class Backend(Face):
    """The primitives of one anyio backend (errors always anyio's)."""

    is_trio: bool = False


TRIO = Backend(
    is_trio=True,
    checkpoint=trio.lowlevel.checkpoint,
    checkpoint_if_cancelled=trio.lowlevel.checkpoint_if_cancelled,
    cancel_shielded_checkpoint=trio.lowlevel.cancel_shielded_checkpoint,
    wait_readable=_trio_wait_readable,
    wait_writable=_trio_wait_writable,
    notify_closing=trio.lowlevel.notify_closing,
    sleep=trio.sleep,
    closed_exception=anyio.ClosedResourceError,
    broken_exception=anyio.BrokenResourceError,
    busy_exception=anyio.BusyResourceError,
)

ANYIO = Backend(
    is_trio=False,
    checkpoint=anyio.lowlevel.checkpoint,
    checkpoint_if_cancelled=anyio.lowlevel.checkpoint_if_cancelled,
    cancel_shielded_checkpoint=anyio.lowlevel.cancel_shielded_checkpoint,
    wait_readable=anyio.wait_readable,
    wait_writable=anyio.wait_writable,
    notify_closing=anyio.notify_closing,
    sleep=anyio.sleep,
    closed_exception=anyio.ClosedResourceError,
    broken_exception=anyio.BrokenResourceError,
    busy_exception=anyio.BusyResourceError,
)


ANYIO_SELECTOR_THREAD = dataclasses.replace(
    ANYIO,
    wait_readable=_selector_thread.wait_readable,
    wait_writable=_selector_thread.wait_writable,
    notify_closing=_selector_thread.notify_closing,
)


def current_backend() -> Backend:
    """TRIO when anyio runs on trio, else ANYIO (asyncio, with or without
    uvloop), or ANYIO_SELECTOR_THREAD on an asyncio loop without add_reader."""
    if trio.lowlevel.in_trio_task():
        return TRIO
    return ANYIO_SELECTOR_THREAD if _selector_thread.needed() else ANYIO


def _anyio_sockaddr(address: Any) -> Any:
    """A sockaddr the way anyio reports it: IPv6 as (host, port), scope in host."""
    if isinstance(address, tuple) and len(address) == 4:
        host, port, _flowinfo, scope_id = address
        if scope_id:
            return f"{host.split('%')[0]}%{scope_id}", port
        return host, port
    return address


def socket_attributes(sock: socket.socket, url: URL) -> dict[Any, Callable[[], Any]]:
    """``anyio.abc.SocketAttribute``'s attributes of *sock*, plus our URL.

    As anyio's own sockets do: the remote address only for a connected
    socket, ports only for IP sockets.
    """
    attribute = anyio.abc.SocketAttribute
    attributes: dict[Any, Callable[[], Any]] = {
        PacketeerAttribute.url: lambda: url,
        attribute.family: lambda: sock.family,
        attribute.local_address: lambda: _anyio_sockaddr(sock.getsockname()),
        attribute.raw_socket: lambda: sock,
    }
    try:
        peer = _anyio_sockaddr(sock.getpeername())
    except OSError:
        peer = None
    if peer is not None:
        attributes[attribute.remote_address] = lambda: peer
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        attributes[attribute.local_port] = lambda: sock.getsockname()[1]
        if peer is not None:
            attributes[attribute.remote_port] = lambda: peer[1]
    return attributes

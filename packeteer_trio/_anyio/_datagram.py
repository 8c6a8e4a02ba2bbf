"""The anyio face of datagrams: unreliable object streams over datagram sockets.

:class:`DatagramSocket` (bound, from ``open_datagram``) carries
``(bytes, URL)`` items, :class:`DatagramChannel` (from ``connect_datagram``)
carries ``bytes``. The loops are lean on every backend, like the trio face's
:mod:`.._datagram`, and keep its rules: the checkpoint sandwich (cancellation
never arrives after a datagram left or was taken from the kernel), a datagram
that does not fit ``max_size`` is reported and never silently cut, and
destination URLs become sockaddrs through the scheme's ``lookup``/``resolve``,
cached per socket. anyio's own datagram sockets would not do: they carry
``(host, port)`` tuples, cut AF_UNIX datagrams at 64 KiB and, on asyncio,
drop datagrams beyond a queue of 100.

Errors are what the trio face raises, with trio's resource errors replaced by
anyio's: ``ClosedResourceError`` and ``BusyResourceError`` for misuse;
``ConnectionRefusedError`` when ICMP says nobody listens at the peer (the
socket stays usable); ``OSError(EMSGSIZE)`` for a datagram too big to send
or to receive; other ``OSError``\\s naming the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from .._datagram_core import (
    DEFAULT_MAX_SIZE,
    TRUNC,
    Data,
    DatagramCore,
    check_size,
    receive_buffer,
)
from .._endpoints import PEER, DatagramEndpoint
from .._io import ConflictDetector
from .._url import URL
from ._backend import current_backend, socket_attributes

__all__ = ["DEFAULT_MAX_SIZE", "DatagramChannel", "DatagramSocket"]


class _DatagramBase(DatagramCore):
    """Waiting and anyio's resource errors on top of the shared core."""

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        super().__init__(endpoint)
        self._send_conflict = ConflictDetector("sending to", anyio.BusyResourceError)
        self._receive_conflict = ConflictDetector(
            "receiving from", anyio.BusyResourceError
        )
        backend = current_backend()
        self._checkpoint = backend.checkpoint
        self._checkpoint_if_cancelled = backend.checkpoint_if_cancelled
        self._cancel_shielded_checkpoint = backend.cancel_shielded_checkpoint
        self._wait_readable = backend.wait_readable
        self._wait_writable = backend.wait_writable
        self._notify_closing = backend.notify_closing

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return socket_attributes(self._sock, self.url)

    async def aclose(self) -> None:
        for sock in self._sockets_to_close():
            self._notify_closing(sock.fileno())
            sock.close()
        self._after_close()
        await self._checkpoint()

    def _closed_error(self) -> anyio.ClosedResourceError:
        return anyio.ClosedResourceError(f"{self.url}: this datagram socket was closed")

    async def _wait_room(self, fd: int, pause: float, waited: bool) -> float:
        # An AF_UNIX socket polls writable while the *peer's* queue is full,
        # so a second EAGAIN in a row backs off instead of spinning.
        if waited:
            await anyio.sleep(pause)
            pause = min(pause * 2 or 0.001, 0.05)
        await self._wait_writable(fd)
        return pause


Packet = tuple[bytes, URL]


class DatagramSocket(_DatagramBase, anyio.abc.UnreliableObjectStream[Packet]):
    """A bound, unconnected datagram socket: items are ``(data, address)``.

    ``receive()`` returns ``(data, sender)`` with *sender* a URL that can be
    passed straight back: ``await sock.send((reply, sender))``. Addresses
    sent to may be ``str`` or ``URL``. ``url`` is the bound address.
    """

    async def send(self, item: tuple[Data, str | URL]) -> None:
        """Send one datagram: ``item`` is ``(data, address)``."""
        data, address = item
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            entry = self._by_id.get(id(address))
            if entry is not None and entry[0] is address:
                target = entry[1]
            else:
                target = await self._target(address)
            if target is PEER:
                sock, fd = self._send_sock, self._send_fd
            else:
                sock, fd = self._sock, self._fd
            waited, pause = False, 0.0
            while True:
                try:
                    if target is PEER:
                        sock.send(data)
                    else:
                        sock.sendto(data, target)
                    break
                except BlockingIOError:
                    pause = await self._wait_room(fd, pause, waited)
                    waited = True
                except OSError as exc:
                    raise self._error(exc, f"send to {address}", data) from exc
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def send_to(self, data: Data, address: str | URL) -> None:
        """Send *data* to *address*: the same as ``send((data, address))``."""
        await self.send((data, address))

    async def receive(self, max_size: int | None = None) -> tuple[bytes, URL]:
        """Receive one datagram as ``(data, sender)``.

        *max_size* (default 65536, enough for any UDP payload) bounds the
        datagram; a bigger one is dropped and reported with OSError(EMSGSIZE).
        """
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            size = check_size(max_size)
            if self._closed:
                raise self._closed_error()
            view = receive_buffer(size)
            waited = False
            while True:
                try:
                    count, address = self._sock.recvfrom_into(view, size + 1, TRUNC)
                    break
                except BlockingIOError:
                    await self._wait_readable(self._fd)
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "receive") from exc
            sender = self._senders.get(address) or self._new_sender(address)
            data = bytes(view[: min(count, size)])  # before any await: shared buffer
            if not waited:
                await self._cancel_shielded_checkpoint()
            if count > size:
                raise self._truncated(count, size, sender)
            return data, sender

    receive_from = receive


class DatagramChannel(_DatagramBase, anyio.abc.UnreliableObjectStream[bytes]):
    """A connected datagram socket: ``send(data)``/``receive()``, one datagram each.

    ``url`` is the peer. A peer that is not there shows as
    ConnectionRefusedError from a later send or receive (ICMP port
    unreachable); the channel stays usable.
    """

    async def send(self, item: Data) -> None:
        """Send one datagram to the peer."""
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            waited, pause = False, 0.0
            while True:
                try:
                    self._send_sock.send(item)
                    break
                except BlockingIOError:
                    pause = await self._wait_room(self._send_fd, pause, waited)
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "send", item) from exc
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def receive(self, max_size: int | None = None) -> bytes:
        """Receive one datagram (at most *max_size* bytes, default 65536)."""
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            size = check_size(max_size)
            if self._closed:
                raise self._closed_error()
            view = receive_buffer(size)
            waited = False
            while True:
                try:
                    count = self._sock.recv_into(view, size + 1, TRUNC)
                    break
                except BlockingIOError:
                    await self._wait_readable(self._fd)
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "receive") from exc
            data = bytes(view[: min(count, size)])  # before any await: shared buffer
            if not waited:
                await self._cancel_shielded_checkpoint()
            if count > size:
                raise self._truncated(count, size, self.url)
            return data

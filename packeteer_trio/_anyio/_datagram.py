"""The anyio face of datagrams: unreliable object streams over datagram sockets.

:class:`OSDatagramSocket` (bound, from ``open_datagram``) carries
``(bytes, URL)`` items, :class:`OSDatagramChannel` (from ``connect_datagram``)
carries ``bytes``: the descriptor-backed implementations of
:mod:`._abc`'s :class:`DatagramSocket` and :class:`DatagramChannel`. On an
asyncio loop with ``add_reader`` (the selector loop, uvloop) the loop reads
ahead into a bounded queue (:mod:`._datagram_readahead`); under trio and on
loops without it (Windows' proactor) the loops are the trio face's, from
:mod:`.._datagram_io`, with anyio's waits bound in: the checkpoint sandwich
(cancellation never arrives after a datagram left or was taken from the
kernel). Either way a datagram that does not fit ``max_size`` is reported
and never silently cut, and destination URLs become sockaddrs through the
scheme's ``lookup``/``resolve``, cached per socket. anyio's own datagram sockets
would not do: they carry ``(host, port)`` tuples, cut AF_UNIX datagrams at
64 KiB and, on asyncio, drop datagrams beyond a queue of 100.

Errors are what the trio face raises, with trio's resource errors replaced by
anyio's: ``ClosedResourceError`` and ``BusyResourceError`` for misuse;
``ConnectionRefusedError`` when ICMP says nobody listens at the peer (the
socket stays usable); ``OSError(EMSGSIZE)`` for a datagram too big to send
or to receive; other ``OSError``\\s naming the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, final

import anyio
import anyio.abc

from .._datagram_core import DEFAULT_MAX_SIZE, Data
from .._datagram_fds import BoundFdIO, ConnectedFdIO
from .._datagram_io import BoundDatagramIO, ConnectedDatagramIO
from .._endpoints import DatagramEndpoint, PacketEndpoint
from .._packet_core import PacketIO
from .._url import URL
from ._abc import DatagramChannel, DatagramSocket
from ._backend import ANYIO, PacketeerAttribute, current_backend, socket_attributes
from ._datagram_readahead import DatagramReadAhead

__all__ = ["DEFAULT_MAX_SIZE", "OSDatagramChannel", "OSDatagramSocket", "PacketChannel"]


class _AnyioDatagram(DatagramReadAhead):
    """anyio's waits and resource errors, bound to the shared datagram core;
    on an asyncio loop with ``add_reader`` (the selector loop, uvloop), read
    ahead (:mod:`._datagram_readahead`), else the lean loops."""

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        super().__init__(endpoint)
        backend = current_backend()
        self._bind(backend)
        self._conflicts(backend, "sending to", "receiving from")
        if backend is ANYIO:
            self._read_ahead()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return socket_attributes(self._sock, self.url)


Packet = tuple[bytes, URL]


@final
class OSDatagramSocket(_AnyioDatagram, BoundDatagramIO, BoundFdIO, DatagramSocket):
    """A bound, unconnected datagram socket: items are ``(data, address)``.

    ``receive()`` returns ``(data, sender)`` with *sender* a URL that can be
    passed straight back: ``await sock.send((reply, sender))``. Addresses
    sent to may be ``str`` or ``URL``. ``url`` is the bound address. On
    ``local://``: ``send_fds_to``, ``receive_fds_from``, ``receive_fds`` and
    (``?passcred=1``) ``receive_with_credentials``, as on the trio face.
    """

    # Plain functions handing back the engine's coroutine: one per call.
    def send(self, item: tuple[Data, str | URL]) -> Coroutine[Any, Any, None]:
        """Send one datagram: ``item`` is ``(data, address)``."""
        if self._queue is None:
            return BoundDatagramIO.send_to(self, *item)
        return self._send_to(*item)

    def send_to(self, data: Data, address: str | URL) -> Coroutine[Any, Any, None]:
        """Send one datagram to *address* (e.g. a ``sender`` from receive_from)."""
        if self._queue is None:
            return BoundDatagramIO.send_to(self, data, address)
        return self._send_to(data, address)

    def receive(
        self, *, max_size: int | None = None
    ) -> Coroutine[Any, Any, tuple[bytes, URL]]:
        """Receive one datagram as ``(data, sender)``.

        *max_size* (keyword-only; default 65536, enough for any UDP payload)
        bounds the datagram; a bigger one is dropped and reported with
        OSError(EMSGSIZE).
        """
        if self._queue is None:
            return BoundDatagramIO.receive_from(self, max_size)
        return self._receive_from(max_size)

    def receive_from(
        self, max_size: int | None = None
    ) -> Coroutine[Any, Any, tuple[bytes, URL]]:
        """Receive one datagram: ``(data, sender)``; *sender* works for send_to."""
        if self._queue is None:
            return BoundDatagramIO.receive_from(self, max_size)
        return self._receive_from(max_size)

    def receive_many(
        self, max_count: int = 64, *, max_size: int | None = None
    ) -> Coroutine[Any, Any, list[tuple[bytes, URL]]]:
        """Wait for one datagram, then take every one already queued.

        Returns up to *max_count* ``(data, sender)`` pairs behind a single
        checkpoint. An error met after the first datagram (a truncated one,
        say) is raised by the next receive, so nothing taken is lost.
        """
        if self._queue is None:
            return BoundDatagramIO.receive_many(self, max_count, max_size=max_size)
        return self._receive_many(max_count, max_size)


@final
class OSDatagramChannel(
    _AnyioDatagram, ConnectedDatagramIO, ConnectedFdIO, DatagramChannel
):
    """A connected datagram socket: ``send(data)``/``receive()``, one datagram each.

    ``url`` is the peer. A peer that is not there shows as
    ConnectionRefusedError from a later send or receive (ICMP port
    unreachable); the channel stays usable. On ``local://``: ``send_fds``,
    ``receive_fds`` and (``?passcred=1``) ``receive_with_credentials``.
    """

    # The shared loop has trio's parameter name (``value``); anyio's is
    # ``item``. Plain functions handing back the engine's coroutine: one per call.
    def send(self, item: Data) -> Coroutine[Any, Any, None]:
        """Send one datagram."""
        if self._queue is None:
            return ConnectedDatagramIO.send(self, item)
        return self._send(item)

    def receive(self, *, max_size: int | None = None) -> Coroutine[Any, Any, bytes]:
        """Receive one datagram (*max_size*, keyword-only: as for
        :meth:`DatagramSocket.receive`)."""
        if self._queue is None:
            return ConnectedDatagramIO.receive(self, max_size=max_size)
        return self._receive(max_size)


@final
class PacketChannel(PacketIO, anyio.abc.UnreliableObjectStream[bytes]):
    """Whole packets of a tun/tap device (``connect_datagram("tun://")``).

    ``receive()`` is one packet (tun: an IP packet, tap: an Ethernet frame),
    ``send(item)`` writes one; the loop is the trio face's
    :class:`packeteer_trio.PacketChannel`'s. ``url`` names the device, with
    the kernel-picked name filled in. A packet longer than ``max_size``
    (keyword-only, default 65600) is an OSError(EMSGSIZE), never cut.
    """

    def __init__(self, endpoint: PacketEndpoint) -> None:
        self._init_packet(endpoint)
        backend = current_backend()
        self._bind(backend)
        self._conflicts(backend, "sending to", "receiving from")

    def send(self, item: Data) -> Coroutine[Any, Any, None]:
        """Write one packet."""
        return PacketIO.send(self, item)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {PacketeerAttribute.url: lambda: self.url}

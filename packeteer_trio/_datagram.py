"""The trio face of datagrams: DatagramSocket (bound) and DatagramChannel (connected).

The loops, address caches and error messages live in :mod:`._datagram_core`,
shared with the anyio face; this module binds trio's waits and checkpoints to
them, maps errors to trio's resource errors, and has the verbs.
"""

from __future__ import annotations

import trio

from ._datagram_core import (
    BoundDatagramIO,
    ConnectedDatagramIO,
    DatagramCore,
    datagram_scheme,
)
from ._endpoints import DatagramEndpoint
from ._errors import InvalidURL
from ._io import ConflictDetector
from ._packet import PacketChannel
from ._sockinfo import socket_url
from ._stream import TRIO_WAITS
from ._url import URL


class _DatagramBase(DatagramCore, trio.abc.AsyncResource):
    """trio's waits and resource errors, bound to the shared datagram core."""

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        super().__init__(endpoint)
        self._send_conflict = ConflictDetector(
            f"{self.url}: another task is already sending on this socket",
            trio.BusyResourceError,
        )
        self._receive_conflict = ConflictDetector(
            f"{self.url}: another task is already receiving on this socket",
            trio.BusyResourceError,
        )
        self._bind(TRIO_WAITS)

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._closed:
            raise self._closed_error()
        return self._fd, self._send_fd

    def _closed_error(self) -> trio.ClosedResourceError:
        return trio.ClosedResourceError(f"{self.url}: this datagram socket was closed")


class DatagramSocket(BoundDatagramIO, _DatagramBase):
    """A bound, unconnected datagram socket from :func:`open_datagram`.

    ``url`` is the bound address (``udp4://127.0.0.1:40123``): what other
    sockets see as the sender, and what they can ``send_to``.
    """


class DatagramChannel(ConnectedDatagramIO, _DatagramBase, trio.abc.Channel[bytes]):
    """A connected datagram socket from :func:`connect_datagram`.

    ``send``/``receive`` move one datagram each; ``url`` is the peer. A peer
    that is not there shows as ConnectionRefusedError from a later send or
    receive (ICMP port unreachable); the channel stays usable.
    """

    @property
    def local_address(self) -> URL:
        return socket_url(self._sock, peer=False)

    @property
    def peer_address(self) -> URL:
        if self._send_sock is not self._sock:  # an unnamed pair: its own peer
            return self.url
        return socket_url(self._sock, peer=True)


async def open_datagram(url: str | URL) -> DatagramSocket:
    """Bind a datagram socket at *url* (port 0 = ephemeral; see ``sock.url``)."""
    url = URL.parse(url)
    scheme = datagram_scheme(url, "open_datagram")
    if scheme.factory is not None:  # a scheme from register_scheme()
        from ._extend import open_user_datagram  # _extend imports this module

        return await open_user_datagram(scheme.factory, url)
    if scheme.open_datagram is None:
        raise scheme.missing("open_datagram", url)
    # Binding a literal address never waits: the checkpoint pair keeps every
    # open_datagram() a checkpoint without risking the new socket.
    await trio.lowlevel.checkpoint_if_cancelled()
    sock = DatagramSocket(await scheme.open_datagram(url))
    await trio.lowlevel.cancel_shielded_checkpoint()
    return sock


async def connect_datagram(
    url: str | URL, *, local: str | URL | None = None
) -> DatagramChannel | PacketChannel:
    """A channel of datagrams to *url*; *local* binds our end first.

    For ``local://`` peers to reply, our end needs an address: give *local*
    (a path or abstract name); on Linux an abstract one is picked otherwise.
    A packet device (``tun://``, ``tap://``) gives a :class:`PacketChannel`.
    """
    url = URL.parse(url)
    local_url = None if local is None else URL.parse(local)
    scheme = datagram_scheme(url, "connect_datagram")
    if scheme.factory is not None:  # a scheme from register_scheme()
        from ._extend import connect_user_datagram  # _extend imports this module

        return await connect_user_datagram(scheme.factory, url, local_url)
    if scheme.connect_packet is not None:
        if local_url is not None:
            raise InvalidURL(f"{url}: {url.scheme}:// has no local address to bind")
        # The checkpoint comes first: once the device exists, nothing may
        # cancel us before the channel owns it.
        await trio.lowlevel.checkpoint()
        return PacketChannel(await scheme.connect_packet(url))
    if scheme.connect_datagram is None:
        raise scheme.missing("connect_datagram", url)
    await trio.lowlevel.checkpoint_if_cancelled()
    channel = DatagramChannel(await scheme.connect_datagram(url, local_url))
    await trio.lowlevel.cancel_shielded_checkpoint()
    return channel

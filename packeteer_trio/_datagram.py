"""The trio face of datagrams: DatagramSocket (bound) and DatagramChannel (connected).

The loops, address caches and error messages live in :mod:`._datagram_core`,
shared with the anyio face; this module binds trio's waits and checkpoints to
them and maps errors to trio's resource errors.
"""

from __future__ import annotations

import trio

from ._datagram_core import BoundDatagramIO, ConnectedDatagramIO, DatagramCore
from ._endpoints import DatagramEndpoint
from ._io import ConflictDetector
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

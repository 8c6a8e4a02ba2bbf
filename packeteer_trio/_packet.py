"""The trio face of packet devices: PacketChannel over a tun/tap descriptor.

The loops live in :mod:`._packet_core`, shared with the anyio face; this
module binds trio's waits and resource errors to them.
"""

from __future__ import annotations

import trio

from ._endpoints import PacketEndpoint
from ._io import ConflictDetector
from ._packet_core import DEFAULT_MAX_SIZE, PacketIO
from ._stream import TRIO_WAITS
from ._url import URL

__all__ = ["DEFAULT_MAX_SIZE", "PacketChannel"]


class PacketChannel(PacketIO, trio.abc.Channel[bytes]):
    """A channel of whole packets from :func:`connect_datagram` (``tun://``, ``tap://``).

    ``receive()`` is one packet (tun: an IP packet, tap: an Ethernet frame),
    ``send()`` writes one. ``url`` names the device as opened, with the
    kernel-picked name filled in (``tun://`` → ``tun:///tun0``). A packet
    larger than ``max_size`` is an error (EMSGSIZE), never silently cut.
    """

    _broken_exception = trio.BrokenResourceError

    def __init__(self, endpoint: PacketEndpoint) -> None:
        self._init_packet(endpoint)
        self._bind(TRIO_WAITS)
        self._send_conflict = ConflictDetector(
            f"{self.url}: another task is already sending on this channel",
            trio.BusyResourceError,
        )
        self._receive_conflict = ConflictDetector(
            f"{self.url}: another task is already receiving on this channel",
            trio.BusyResourceError,
        )

    @property
    def local_address(self) -> URL:
        return self.url

    @property
    def peer_address(self) -> URL:
        return self.url

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._holder.closed:
            raise self._closed_error()
        return self._holder.fd, self._holder.fd

    def _closed_error(self) -> trio.ClosedResourceError:
        return trio.ClosedResourceError(f"{self.url}: this channel was closed")

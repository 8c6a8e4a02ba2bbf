"""The trio face of packet devices: PacketChannel over a tun/tap descriptor.

The loops live in :mod:`.._packet_core`, shared with the anyio face; this
module binds trio's primitives and errors to them.
"""

from __future__ import annotations

from typing import final

import trio

from .._endpoints import PacketEndpoint
from .._packet_core import DEFAULT_MAX_SIZE, PacketIO
from .._url import URL
from ._face import TRIO

__all__ = ["DEFAULT_MAX_SIZE", "PacketChannel"]


@final
class PacketChannel(PacketIO, trio.abc.Channel[bytes]):
    """A channel of whole packets from :func:`connect_datagram` (``tun://``, ``tap://``).

    ``receive()`` is one packet (tun: an IP packet, tap: an Ethernet frame),
    ``send()`` writes one. ``url`` names the device as opened, with the
    kernel-picked name filled in (``tun://`` → ``tun:///tun0``). A packet
    larger than ``max_size`` is an error (EMSGSIZE), never silently cut.
    """

    def __init__(self, endpoint: PacketEndpoint) -> None:
        self._init_packet(endpoint)
        self._bind(TRIO)
        self._conflicts(
            TRIO,
            f"{self.url}: another task is already sending on this channel",
            f"{self.url}: another task is already receiving on this channel",
        )

    @property
    def local_address(self) -> URL:
        return self.url

    @property
    def peer_address(self) -> URL:
        return self.url

"""The trio face's datagram sockets over raw endpoints: bound and connected.

The loops, address caches and error messages live in :mod:`.._datagram_io`
and :mod:`.._datagram_core`, shared with the anyio face; these classes bind
trio's primitives and errors.
"""

from __future__ import annotations

from typing import final

from .._datagram_core import DatagramCore
from .._datagram_fds import BoundFdIO, ConnectedFdIO
from .._datagram_io import BoundDatagramIO, ConnectedDatagramIO
from .._endpoints import DatagramEndpoint
from .._sockinfo import socket_url
from .._url import URL
from ._abc import DatagramChannel, DatagramSocket
from ._face import TRIO


def _start(sock: DatagramCore) -> None:
    sock._bind(TRIO)
    sock._conflicts(
        TRIO,
        f"{sock.url}: another task is already sending on this socket",
        f"{sock.url}: another task is already receiving on this socket",
    )


@final
class OSDatagramSocket(BoundDatagramIO, BoundFdIO, DatagramSocket):
    """A :class:`DatagramSocket` over a bound, unconnected socket.

    On ``local://`` it passes descriptors (``send_fds_to``,
    ``receive_fds_from``, ``receive_fds``) and, opened with ``?passcred=1``
    on Linux, receives each datagram's sender credentials
    (``receive_with_credentials``).
    """

    _shown_as = "DatagramSocket"

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        super().__init__(endpoint)
        _start(self)


@final
class OSDatagramChannel(ConnectedDatagramIO, ConnectedFdIO, DatagramChannel):
    """A :class:`DatagramChannel` over a connected socket.

    On ``local://``: ``send_fds``, ``receive_fds`` and (``?passcred=1``)
    ``receive_with_credentials``, as :class:`OSDatagramSocket`.
    """

    _shown_as = "DatagramChannel"

    def __init__(self, endpoint: DatagramEndpoint) -> None:
        super().__init__(endpoint)
        _start(self)

    @property
    def local_address(self) -> URL:
        return socket_url(self._sock, peer=False)

    @property
    def peer_address(self) -> URL:
        if self._send_sock is not self._sock:  # an unnamed pair: its own peer
            return self.url
        return socket_url(self._sock, peer=True)

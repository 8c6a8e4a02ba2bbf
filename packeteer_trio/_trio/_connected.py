"""What the trio face's connected sockets tell, whatever their loops move."""

from __future__ import annotations

from .._io import SocketEnd
from .._sockinfo import peer_credentials, socket_url
from .._url import URL


class ConnectedSocket(SocketEnd):
    """Addresses, peer credentials and the scheduler's descriptors of a
    connected socket (byte streams and seqpacket channels alike)."""

    @property
    def local_address(self) -> URL:
        return socket_url(self._sock, peer=False)

    @property
    def peer_address(self) -> URL:
        return socket_url(self._sock, peer=True)

    def peer_credentials(self) -> tuple[int, int, int]:
        """``(pid, uid, gid)`` of the peer process (local:// only)."""
        return peer_credentials(self._sock, self.url)

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._closed:
            raise self._closed_error()
        return self._fd, self._fd

"""Descriptors and credentials on ``local://`` datagram sockets, both faces.

The bound socket (``open_datagram``) sends with ``send_fds_to(message, fds,
address)`` and receives with ``receive_fds_from(msglen, maxfds)`` (the
sender too) or anyio's ``receive_fds(msglen, maxfds)``; the connected one
(``connect_datagram``) has anyio's ``send_fds``/``receive_fds``. A datagram
longer than *msglen* is an ``OSError(EMSGSIZE)``, never cut (its descriptors
closed), as for plain receives. The never-leak rules are :mod:`._fdpass`'s.

``receive_with_credentials()`` gives each datagram with its sender's
:class:`~._fdpass.Credentials`, on a socket opened with ``?passcred=1``
(Linux ``SO_PASSCRED``, set before the socket is bound, so that no datagram
can arrive without them). Descriptors sent to it are closed, as a plain
``recv`` closes them.
"""

from __future__ import annotations

import socket
from collections.abc import Collection
from io import IOBase

from ._datagram_core import DatagramCore, check_size
from ._endpoints import PEER
from ._errors import PacketeerError
from ._fdpass import (
    HAS_CREDENTIALS,
    SO_PASSCRED,
    Credentials,
    MessageIO,
    check_receive,
    control_size,
    cut,
    filenos,
    not_unix,
    too_many,
    truncated,
)
from ._url import URL


class _DatagramMessages(DatagramCore, MessageIO):
    _passcred: bool | None = None

    def _send_failure(self, exc: OSError) -> Exception:
        # A datagram socket is not broken by one failed send (a destination
        # nobody is bound at, say): the datagram errors, naming the URL.
        return self._error(exc, "send_fds")

    def _check_unix(self) -> None:
        if self._family != getattr(socket, "AF_UNIX", None):
            raise not_unix(self.url)

    def _credentialed(self) -> bool:
        if self._passcred is None:
            self._passcred = HAS_CREDENTIALS and bool(
                self._sock.getsockopt(socket.SOL_SOCKET, SO_PASSCRED)
            )
        return self._passcred

    async def _receive_message(
        self, msglen: int, maxfds: int
    ) -> tuple[bytes, list[int], object]:
        check_receive(msglen, maxfds)
        self._check_unix()
        with self._receive_conflict:
            data, fds, _, flags, address = await self._recvmsg(
                msglen + 1, control_size(self._credentialed())
            )
        if cut(data, flags, msglen):
            raise truncated(self.url, msglen, fds, "datagram")
        if len(fds) > maxfds:
            raise too_many(self.url, data, fds, maxfds)
        return data, fds, address

    async def _receive_credentialed(
        self, max_size: int | None
    ) -> tuple[bytes, Credentials, object]:
        size = check_size(max_size)
        self._check_unix()
        if not self._credentialed():
            if not HAS_CREDENTIALS:
                raise PacketeerError(
                    f"{self.url}: per-datagram credentials (SCM_CREDENTIALS) "
                    "exist only on Linux; a local:// stream's peer_credentials() "
                    "works on macOS and the BSDs too"
                )
            raise PacketeerError(
                f"{self.url}: this socket does not receive credentials; open "
                "it with ?passcred=1"
            )
        with self._receive_conflict:
            data, _, credentials, flags, address = await self._recvmsg(
                size + 1, control_size(True), drop_fds=True
            )
        if cut(data, flags, size):
            raise truncated(self.url, size, [], "datagram")
        if credentials is None:  # pragma: no cover - the kernel always adds them
            raise PacketeerError(f"{self.url}: a datagram came without credentials")
        return data, credentials, address


class BoundFdIO(_DatagramMessages):
    """The bound socket's descriptor and credential methods."""

    async def send_fds_to(
        self, message: bytes, fds: Collection[int | IOBase], address: str | URL
    ) -> None:
        """Send one datagram *message* with the descriptors *fds* to *address*."""
        numbers = filenos(self.url, fds)
        self._check_unix()
        with self._send_conflict:
            if self._closed:
                raise self._closed_error()
            target = await self._target(address)
            if target is PEER:
                sock, fd, where = self._send_sock, self._send_fd, None
            else:
                sock, fd, where = self._sock, self._fd, target
            await self._sendmsg(sock, fd, message, numbers, where, whole=True)

    async def receive_fds_from(
        self, msglen: int, maxfds: int
    ) -> tuple[bytes, list[int], URL]:
        """One datagram of at most *msglen* bytes with at most *maxfds*
        descriptors (yours to close), and its sender."""
        data, fds, address = await self._receive_message(msglen, maxfds)
        return data, fds, self._senders.get(address) or self._new_sender(address)

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        """:meth:`receive_fds_from` without the sender (anyio's signature)."""
        data, fds, _ = await self._receive_message(msglen, maxfds)
        return data, fds

    async def receive_with_credentials(
        self, max_size: int | None = None
    ) -> tuple[bytes, URL, Credentials]:
        """One datagram ``(data, sender, credentials)``; needs ``?passcred=1``."""
        data, credentials, address = await self._receive_credentialed(max_size)
        sender = self._senders.get(address) or self._new_sender(address)
        return data, sender, credentials


class ConnectedFdIO(_DatagramMessages):
    """The connected socket's descriptor and credential methods."""

    async def send_fds(self, message: bytes, fds: Collection[int | IOBase]) -> None:
        """Send one datagram *message* with the descriptors *fds* to the peer."""
        numbers = filenos(self.url, fds)
        self._check_unix()
        with self._send_conflict:
            await self._sendmsg(
                self._send_sock, self._send_fd, message, numbers, whole=True
            )

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        """One datagram of at most *msglen* bytes with at most *maxfds*
        descriptors (yours to close)."""
        data, fds, _ = await self._receive_message(msglen, maxfds)
        return data, fds

    async def receive_with_credentials(
        self, *, max_size: int | None = None
    ) -> tuple[bytes, Credentials]:
        """One datagram ``(data, credentials)``; needs ``?passcred=1``."""
        data, credentials, _ = await self._receive_credentialed(max_size)
        return data, credentials

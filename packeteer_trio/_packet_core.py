"""What both faces' packet channels share: the loops over a tun/tap descriptor.

A tun/tap fd is not a socket: ``read()`` returns exactly one packet and
``write()`` sends exactly one, so the loops are plain ``os.read`` /
``os.write`` with the sandwich of :mod:`._fdio`: ``checkpoint_if_cancelled()``,
the syscall, on EAGAIN a wait (the schedule point), else a closing
``cancel_shielded_checkpoint()``. ``Cancelled`` can only arrive before a
packet leaves or is taken from the kernel. They are not the datagram loops
of :mod:`._datagram_io`: no sockaddrs, no retries when the kernel is short
of memory (a tun/tap write either takes the packet or fails), and the
device's own errors (a deleted interface, a link that is down). The trio face
(:mod:`._trio._packet`) and the anyio face (:mod:`._anyio._datagram`) bind
their :class:`._io.Face`; nothing else differs.
"""

from __future__ import annotations

import errno
import os

from ._datagram_core import check_size
from ._endpoints import PacketEndpoint
from ._errors import with_url
from ._io import FaceHooks, FdHolder
from ._url import URL

# Any tun/tap packet fits: an MTU of at most 65535, plus an Ethernet and VLAN
# header (tap) or the 4-byte packet-info header (?pi=1).
DEFAULT_MAX_SIZE = 65536 + 64
Data = bytes | bytearray | memoryview
# Linux: the device behind a tun fd was deleted (``ip link del``).
_EBADFD = getattr(errno, "EBADFD", -1)


class PacketIO(FaceHooks):
    """send / receive of whole packets, aclose, and the error messages.

    A face binds its :class:`._io.Face` and conflict detectors.
    """

    _noun = "channel"
    url: URL

    def _init_packet(self, endpoint: PacketEndpoint) -> None:
        self.url = endpoint.url
        self._holder = FdHolder(endpoint.fd)  # fd -1 once closed
        self._closed = False
        self._on_close = None

    async def send(self, value: Data) -> None:
        """Write one packet (tun: an IP packet, tap: an Ethernet frame)."""
        # trio's parameter name; the anyio face forwards its ``item`` here.
        data = value
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._holder.closed:
                raise self._closed_error()
            # No await between here and each syscall, so fd stays ours; a
            # close while we wait wakes the wait with the "closed" error.
            fd, waited = self._holder.fd, False
            while True:
                try:
                    os.write(fd, data)
                    break
                except BlockingIOError:
                    try:
                        await self._wait_writable(fd)
                    except self._closed_exception:
                        raise self._closed_error() from None
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "send", data) from exc
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def receive(self, *, max_size: int | None = None) -> bytes:
        """Read one packet; EMSGSIZE if it is longer than *max_size*.

        *max_size* is keyword-only: the ABCs' ``receive()`` takes no argument.
        """
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            size = check_size(max_size, DEFAULT_MAX_SIZE)
            if self._holder.closed:
                raise self._closed_error()
            fd, waited = self._holder.fd, False
            while True:
                try:
                    # One byte more than allowed: a longer packet is seen.
                    data = os.read(fd, size + 1)
                    break
                except BlockingIOError:
                    try:
                        await self._wait_readable(fd)
                    except self._closed_exception:
                        raise self._closed_error() from None
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "receive") from exc
            if not waited:
                await self._cancel_shielded_checkpoint()
            if len(data) > size:
                raise OSError(
                    errno.EMSGSIZE,
                    f"{self.url}: receive failed: a packet longer than "
                    f"max_size={size} bytes was dropped; receive with a larger "
                    "max_size",
                )
            return data

    async def aclose(self) -> None:
        if not self._holder.closed:
            self._closed = True
            # Wakes any task waiting on the fd with the "closed" error.
            self._notify_closing(self._holder.fd)
            self._holder.close()
        await self._checkpoint()

    def fileno(self) -> int:
        """The device's descriptor (-1 once closed). Don't close it behind our back."""
        return self._holder.fd

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._holder.closed:
            raise self._closed_error()
        return self._holder.fd, self._holder.fd

    def _error(self, exc: OSError, action: str, data: Data | None = None) -> Exception:
        if self._holder.closed or exc.errno == errno.EBADF:
            return self._closed_error()
        if exc.errno == _EBADFD:
            return self._broken_exception(
                f"{self.url}: {action} failed: the interface was deleted"
            )
        if exc.errno == errno.EIO:  # what tun/tap answer while the link is down
            return OSError(
                errno.EIO,
                f"{self.url}: {action} failed: input/output error (is the "
                "interface down?)",
            )
        if exc.errno in (errno.EINVAL, errno.EMSGSIZE) and data is not None:
            size = memoryview(data).nbytes
            return OSError(
                exc.errno,
                f"{self.url}: {action} failed: the kernel refused this {size}-byte "
                f"packet ({exc.strerror}): too short, too long, or not a packet "
                "of this device's kind",
            )
        return with_url(exc, self.url, action)

"""The trio face of packet devices: PacketChannel over a tun/tap descriptor.

A tun/tap fd is not a socket: ``read()`` returns exactly one packet and
``write()`` sends exactly one, so the channel is plain ``os.read`` /
``os.write`` with the same inline sandwich as :class:`._stream.PipeStream`:
``checkpoint_if_cancelled()``, the syscall, on EAGAIN a wait (the schedule
point), else a closing ``cancel_shielded_checkpoint()``. ``Cancelled`` can
only arrive before a packet leaves or is taken from the kernel.
"""

from __future__ import annotations

import errno
import os

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    notify_closing,
    wait_readable,
    wait_writable,
)

from ._datagram_core import check_size
from ._endpoints import PacketEndpoint
from ._errors import with_url
from ._io import ConflictDetector, FdHolder
from ._url import URL

# Any tun/tap packet fits: an MTU of at most 65535, plus an Ethernet and VLAN
# header (tap) or the 4-byte packet-info header (?pi=1).
DEFAULT_MAX_SIZE = 65536 + 64
Data = bytes | bytearray | memoryview
# Linux: the device behind a tun fd was deleted (``ip link del``).
_EBADFD = getattr(errno, "EBADFD", -1)


class PacketChannel(trio.abc.Channel[bytes]):
    """A channel of whole packets from :func:`connect_datagram` (``tun://``, ``tap://``).

    ``receive()`` is one packet (tun: an IP packet, tap: an Ethernet frame),
    ``send()`` writes one. ``url`` names the device as opened, with the
    kernel-picked name filled in (``tun://`` → ``tun:///tun0``). A packet
    larger than ``max_size`` is an error (EMSGSIZE), never silently cut.
    """

    url: URL

    def __init__(self, endpoint: PacketEndpoint) -> None:
        self.url = endpoint.url
        self._holder = FdHolder(endpoint.fd)  # fd -1 once closed
        self._send_conflict = ConflictDetector(
            f"{self.url}: another task is already sending on this channel",
            trio.BusyResourceError,
        )
        self._receive_conflict = ConflictDetector(
            f"{self.url}: another task is already receiving on this channel",
            trio.BusyResourceError,
        )

    async def send(self, value: Data) -> None:
        """Write one packet (tun: an IP packet, tap: an Ethernet frame)."""
        with self._send_conflict:
            await checkpoint_if_cancelled()
            if self._holder.closed:
                raise self._closed_error()
            # No await between here and each syscall, so fd stays ours; a
            # close while we wait wakes the wait with ClosedResourceError.
            fd, waited = self._holder.fd, False
            while True:
                try:
                    os.write(fd, value)
                    break
                except BlockingIOError:
                    try:
                        await wait_writable(fd)
                    except trio.ClosedResourceError:
                        raise self._closed_error() from None
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "send", value) from exc
            if not waited:
                await cancel_shielded_checkpoint()

    async def receive(self, max_size: int | None = None) -> bytes:
        """Read one packet; EMSGSIZE if it is longer than *max_size*."""
        with self._receive_conflict:
            await checkpoint_if_cancelled()
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
                        await wait_readable(fd)
                    except trio.ClosedResourceError:
                        raise self._closed_error() from None
                    waited = True
                except OSError as exc:
                    raise self._error(exc, "receive") from exc
            if not waited:
                await cancel_shielded_checkpoint()
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
            # Wakes any task waiting on the fd with ClosedResourceError.
            notify_closing(self._holder.fd)
            self._holder.close()
        await checkpoint()

    def fileno(self) -> int:
        """The device's descriptor (-1 once closed). Don't close it behind our back."""
        return self._holder.fd

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

    def _error(self, exc: OSError, action: str, data: Data | None = None) -> Exception:
        if self._holder.closed or exc.errno == errno.EBADF:
            return self._closed_error()
        if exc.errno == _EBADFD:
            return trio.BrokenResourceError(
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

    def __repr__(self) -> str:
        return f"<PacketChannel {self.url}{' closed' if self._holder.closed else ''}>"

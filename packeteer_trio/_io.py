"""The small shared pieces of the I/O core: owning fds, detecting conflicts.

The send/receive loops themselves are written out inline in each face's
classes (:mod:`._stream`, :mod:`._datagram`, :mod:`.anyio_compat`): a helper
layer per call would cost more than the syscall on small messages.
"""

from __future__ import annotations

import os
import socket
from types import TracebackType


class FdHolder:
    """Owns a raw file descriptor and forgets its number when closed.

    Like trio's ``_FdHolder``: once we close fd 7, the OS may hand 7 out again
    to unrelated code, so nothing may keep using the number. After
    :meth:`close` ``fd`` is -1 and any syscall on it fails with EBADF instead
    of touching someone else's file.
    """

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @property
    def closed(self) -> bool:
        return self.fd == -1

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class ConflictDetector:
    """Raise a face's "busy" error when two tasks use one direction at once.

    Two tasks calling ``send_all`` on one stream at the same time is a bug in
    the caller, not something to queue; trio's ABCs say it must raise
    ``BusyResourceError``. Each face passes its own exception class.
    """

    __slots__ = ("_error", "_held", "_message")

    def __init__(self, message: str, error: type[Exception]) -> None:
        self._message = message
        self._error = error
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise self._error(self._message)
        self._held = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._held = False


class SocketAccess:
    """The socket itself and its options, for every class that wraps one."""

    _sock: socket.socket

    @property
    def socket(self) -> socket.socket:
        """The underlying (non-blocking) socket. Don't close it behind our back."""
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._sock.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        if buflen:
            return self._sock.getsockopt(level, option, buflen)
        return self._sock.getsockopt(level, option)

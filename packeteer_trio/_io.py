"""The I/O core's contract with the faces, and its small shared pieces.

A face (trio's in :mod:`._trio`, anyio's in :mod:`._anyio`) hands the core a
:class:`Face`: how to wait and checkpoint, and which exceptions to raise.
Each object binds it once (:meth:`FaceHooks._bind`); the loops of
:mod:`._fdio`, :mod:`._datagram_core` and :mod:`._packet_core` then call the
bound primitives directly, and build their "closed" and "broken" errors from
the face's classes. Also here: owning a raw fd, detecting two tasks in one
direction, and the socket accessors every socket-backed class has.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType

from ._endpoints import StreamEndpoint
from ._url import URL

WaitFd = Callable[[int], Awaitable[None]]
Checkpoint = Callable[[], Awaitable[None]]

# A send or receive the kernel refused for lack of memory did nothing, and
# memory comes back: like a blocking call, which would sleep in the kernel
# until then, the loops pause (1 ms, doubling up to 100 ms) and try again.
SHORT_OF_MEMORY = frozenset({errno.ENOMEM, errno.ENOBUFS})
FIRST_PAUSE = 0.001


def shut_write(sock: socket.socket, broken: Callable[[OSError], Exception]) -> None:
    """``send_eof``'s system call: ``shutdown(SHUT_WR)``; ENOTCONN is no
    error (the peer is gone: there is nothing left to end)."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise broken(exc) from exc


MAX_PAUSE = 0.1


@dataclasses.dataclass(frozen=True)
class Face:
    """What one face (or one anyio backend) supplies to the core.

    The waits and checkpoints, and the face's exception classes:
    ``closed_exception`` (also what its waits raise when the descriptor is
    closed under them, after ``notify_closing``), ``broken_exception`` (the
    connection failed) and ``busy_exception`` (two tasks in one direction).
    """

    checkpoint: Checkpoint
    checkpoint_if_cancelled: Checkpoint
    cancel_shielded_checkpoint: Checkpoint
    wait_readable: WaitFd
    wait_writable: WaitFd
    notify_closing: Callable[[int], None]
    sleep: Callable[[float], Awaitable[None]]
    closed_exception: type[Exception]
    broken_exception: type[Exception]
    busy_exception: type[Exception]


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
    ``with detector:`` is the usual form; the hottest loops test and set
    :attr:`held` inline instead (two Python calls less per operation).
    """

    __slots__ = ("_error", "_message", "held")

    def __init__(self, message: str, error: type[Exception]) -> None:
        self._message = message
        self._error = error
        self.held = False

    def busy(self) -> Exception:
        """The error for a second task in this direction."""
        return self._error(self._message)

    def __enter__(self) -> None:
        if self.held:
            raise self.busy()
        self.held = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.held = False


class FaceHooks:
    """The face's primitives, bound into each object, and the errors built
    from its exception classes. ``_noun`` names the object in messages."""

    url: URL
    _noun = "stream"
    _closed: bool
    _on_close: Callable[[], None] | None
    _send_conflict: ConflictDetector
    _receive_conflict: ConflictDetector
    _wait_readable: WaitFd
    _wait_writable: WaitFd
    _checkpoint: Checkpoint
    _checkpoint_if_cancelled: Checkpoint
    _cancel_shielded_checkpoint: Checkpoint
    _notify_closing: Callable[[int], None]
    _sleep: Callable[[float], Awaitable[None]]
    _closed_exception: type[Exception]
    _broken_exception: type[Exception]

    def _bind(self, face: Face) -> None:
        # Bound once per object: the loops call these directly, and an
        # attribute load is all a call costs beyond the primitive itself.
        self._checkpoint = face.checkpoint
        self._checkpoint_if_cancelled = face.checkpoint_if_cancelled
        self._cancel_shielded_checkpoint = face.cancel_shielded_checkpoint
        self._wait_readable = face.wait_readable
        self._wait_writable = face.wait_writable
        self._notify_closing = face.notify_closing
        self._sleep = face.sleep
        self._closed_exception = face.closed_exception
        self._broken_exception = face.broken_exception

    def _conflicts(self, face: Face, sending: str, receiving: str) -> None:
        """One detector per direction, raising the face's busy error."""
        self._send_conflict = ConflictDetector(sending, face.busy_exception)
        self._receive_conflict = ConflictDetector(receiving, face.busy_exception)

    def _closed_error(self) -> Exception:
        return self._closed_exception(f"{self.url}: this {self._noun} was closed")

    def _broken(self, exc: OSError) -> Exception:
        if self._closed or exc.errno == errno.EBADF:
            return self._closed_error()
        return self._broken_exception(f"{self.url}: {exc.strerror or exc}")

    async def _pause_for_memory(self, exc: OSError, pause: float) -> float:
        """After ENOMEM/ENOBUFS, sleep *pause* and return the next one; any
        other error is raised as the face's broken (or closed) error."""
        if exc.errno not in SHORT_OF_MEMORY or self._closed:
            raise self._broken(exc) from exc
        await self._sleep(pause)
        if self._closed:  # closed while we slept: the fd number is not ours
            raise self._closed_error()
        return min(pause * 2, MAX_PAUSE)

    def _run_on_close(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    def __repr__(self) -> str:
        # The public type a verb promised, where the class itself is private.
        name = getattr(self, "_shown_as", type(self).__name__)
        return f"<{name} {self.url}{' closed' if self._closed else ''}>"


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


class SocketEnd(SocketAccess, FaceHooks):
    """One end of a connected socket, whatever its loops move (bytes or
    records): setup, ``send_eof``, the writable wait and closing."""

    _fd: int
    _did_shutdown: bool

    def _init_socket(self, endpoint: StreamEndpoint) -> None:
        assert endpoint.sock is not None
        self._sock = endpoint.sock
        self._fd = self._sock.fileno()
        self._did_shutdown = False

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            if self._closed:
                raise self._closed_error()
            await self._wait_writable(self._fd)

    async def send_eof(self) -> None:
        with self._send_conflict:
            await self._checkpoint()
            if self._closed:
                raise self._closed_error()
            if self._did_shutdown:
                return
            self._did_shutdown = True
            shut_write(self._sock, self._broken)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._notify_closing(self._fd)
            self._sock.close()
            self._run_on_close()
        await self._checkpoint()

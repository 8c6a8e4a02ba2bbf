"""Descriptors over AF_UNIX sockets (SCM_RIGHTS) and senders' credentials
(Linux SCM_CREDENTIALS), for both faces.

``send_fds(message, fds)`` / ``receive_fds(msglen, maxfds)`` have anyio's
signatures and meaning (anyio's ``UNIXSocketStream``); what ours add is that
a received descriptor is never leaked:

- the control buffer always has room for 253 descriptors (Linux's
  ``SCM_MAX_FD``, the most one ``sendmsg`` may carry) whatever ``maxfds``
  says, so descriptors beyond ``maxfds`` land with us, to be closed and
  counted, instead of being cut off unseen;
- if more than ``maxfds`` came, or the kernel still had to cut
  (``MSG_CTRUNC``), every descriptor of that message is closed and
  :class:`~packeteer_trio.DescriptorsDropped` raised, carrying the message
  bytes (a stream loses nothing);
- the syscall sits in the checkpoint sandwich: ``Cancelled`` can only come
  before ``recvmsg`` handed anything over, and whatever fails after it
  (an unexpected control message, a too-long datagram) closes what came;
- received descriptors are close-on-exec (``MSG_CMSG_CLOEXEC`` on Linux,
  set right after the call elsewhere), like every descriptor Python makes.
"""

from __future__ import annotations

import array
import errno
import os
import socket
import struct
import sys
from collections.abc import Collection
from io import IOBase
from typing import Any, NamedTuple, final

from ._errors import DescriptorsDropped, PacketeerError
from ._io import FIRST_PAUSE, SHORT_OF_MEMORY, FaceHooks, SocketAccess
from ._url import URL

_INT = array.array("i").itemsize
ROOM_FDS = 253  # Linux's SCM_MAX_FD
_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
_CTRUNC = getattr(socket, "MSG_CTRUNC", 0)
_TRUNC = getattr(socket, "MSG_TRUNC", 0)
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_SOL_SOCKET = socket.SOL_SOCKET
_SCM_RIGHTS = getattr(socket, "SCM_RIGHTS", -1)
_SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", -1)
_UCRED = struct.Struct("iII")  # Linux's struct ucred: pid, uid, gid
SO_PASSCRED = getattr(socket, "SO_PASSCRED", -1)
HAS_CREDENTIALS = hasattr(socket, "SO_PASSCRED") and hasattr(socket, "SCM_CREDENTIALS")


@final
class Credentials(NamedTuple):
    """Who sent a datagram, as the kernel vouches for it (SCM_CREDENTIALS).

    A sender can only claim its own pid, uid and gid (the kernel checks;
    only a privileged process may claim others), so a server may trust
    them as ``peer_credentials()`` is trusted. ``pid`` is the sender's at
    sending time: that process may have exited since.
    """

    pid: int
    uid: int
    gid: int


def filenos(url: URL, fds: Collection[int | IOBase]) -> array.array[int]:
    """The descriptor numbers of *fds* (ints, files, sockets), checked."""
    if not fds:
        raise ValueError("fds must not be empty")
    if len(fds) > ROOM_FDS:
        raise ValueError(f"{url}: at most {ROOM_FDS} descriptors go in one message")
    numbers = array.array("i")
    for fd in fds:
        if isinstance(fd, int):
            numbers.append(fd)
        elif hasattr(fd, "fileno"):  # files and sockets alike, as anyio
            numbers.append(fd.fileno())
        else:
            raise TypeError(f"{fd!r} is neither a descriptor nor has fileno()")
    return numbers


def check_receive(msglen: int, maxfds: int) -> None:
    # anyio's checks and messages.
    if not isinstance(msglen, int) or msglen < 0:
        raise ValueError("msglen must be a non-negative integer")
    if not isinstance(maxfds, int) or maxfds < 1:
        raise ValueError("maxfds must be a positive integer")


def control_size(credentials: bool) -> int:
    """The control buffer: room for ROOM_FDS descriptors (and a ucred)."""
    if sys.platform == "win32":  # pragma: no cover - no AF_UNIX in CPython there
        return 0
    size = socket.CMSG_SPACE(ROOM_FDS * _INT)
    if credentials:
        size += socket.CMSG_SPACE(_UCRED.size)
    return size


def close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def take_ancillary(
    url: URL, message: bytes, ancdata: list[tuple[int, int, bytes]], flags: int
) -> tuple[list[int], Credentials | None, Exception | None]:
    """The descriptors and credentials of one received message, and the
    error to raise once the receive is over (its descriptors then closed).

    Never raises: a receive calls this right after ``recvmsg``, and every
    descriptor it got must either reach the caller or be closed.
    """
    numbers = array.array("i")
    credentials: Credentials | None = None
    unknown: tuple[int, int] | None = None
    for level, kind, data in ancdata:
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
            numbers.frombytes(data[: len(data) - len(data) % _INT])
        elif level == _SOL_SOCKET and kind == _SCM_CREDENTIALS:
            if len(data) >= _UCRED.size:
                credentials = Credentials(*_UCRED.unpack_from(data))
        else:
            unknown = (level, kind)
    fds = list(numbers)
    error: Exception | None = None
    if not _CLOEXEC:
        for fd in fds:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
    if flags & _CTRUNC:
        error = DescriptorsDropped(
            f"{url}: a message came with more descriptors than fit the control "
            f"buffer ({ROOM_FDS}); the {len(fds)} received were closed",
            message=message,
            received=len(fds),
            truncated=True,
        )
    elif unknown is not None:
        error = RuntimeError(
            f"{url}: unexpected ancillary data (level {unknown[0]}, type "
            f"{unknown[1]}) with message {message!r}"
        )
    if error is not None:
        close_all(fds)
        fds = []
    return fds, credentials, error


def too_many(url: URL, message: bytes, fds: list[int], maxfds: int) -> Exception:
    """Close *fds* (more than *maxfds*) and say so."""
    close_all(fds)
    return DescriptorsDropped(
        f"{url}: a message came with {len(fds)} descriptors, more than "
        f"maxfds={maxfds}; all were closed",
        message=message,
        received=len(fds),
        truncated=False,
    )


def not_unix(url: URL) -> PacketeerError:
    return PacketeerError(f"{url}: descriptors pass only over local:// sockets")


class MessageIO(SocketAccess, FaceHooks):
    """``sendmsg``/``recvmsg`` in the checkpoint sandwich, for every AF_UNIX
    class (streams, datagram sockets, seqpacket channels)."""

    _fd: int

    async def _recvmsg(
        self, size: int, ancsize: int, *, drop_fds: bool = False
    ) -> tuple[bytes, list[int], Credentials | None, int, Any]:
        """One ``recvmsg``: ``(data, fds, credentials, flags, address)``.

        Call it holding the receive conflict detector. The descriptors
        returned are the caller's; on any error they are closed. *drop_fds*:
        the caller takes none, so any that came are closed, as the kernel
        does for a plain ``recv``.
        """
        if sys.platform == "win32":  # pragma: no cover - no AF_UNIX in CPython
            raise not_unix(self.url)
        await self._checkpoint_if_cancelled()
        if self._closed:
            raise self._closed_error()
        waited, pause = False, FIRST_PAUSE
        while True:
            try:
                data, ancdata, flags, address = self._sock.recvmsg(
                    size, ancsize, _CLOEXEC
                )
                break
            except BlockingIOError:
                await self._wait_readable(self._fd)
                waited = True
            except OSError as exc:
                pause = await self._pause_for_memory(exc, pause)
                waited = True
        # From here on every descriptor is accounted for: no await can lose
        # one, and whatever fails closes them.
        fds, credentials, error = take_ancillary(self.url, data, ancdata, flags)
        if drop_fds:
            close_all(fds)
            fds = []
            if isinstance(error, DescriptorsDropped):
                error = None
        if not waited:
            try:
                await self._cancel_shielded_checkpoint()
            except BaseException:  # KeyboardInterrupt, say
                close_all(fds)
                raise
        if error is not None:
            raise error
        return data, fds, credentials, flags, address

    async def _sendmsg(
        self,
        sock: socket.socket,
        fd: int,
        message: bytes,
        numbers: array.array[int],
        address: Any = None,
        *,
        whole: bool,
    ) -> None:
        """Send *message* with the descriptors *numbers* (to *address* if
        given). *whole*: one datagram or record, sent whole or not at all;
        otherwise (a stream) the rest follows without the descriptors."""
        if sys.platform == "win32":  # pragma: no cover - no AF_UNIX in CPython
            raise not_unix(self.url)
        ancdata = [(_SOL_SOCKET, _SCM_RIGHTS, numbers)]
        await self._checkpoint_if_cancelled()
        if self._closed or getattr(self, "_did_shutdown", False):
            raise self._closed_error()
        waited, pause = False, FIRST_PAUSE
        with memoryview(message) as view:
            sent = 0
            while True:
                try:
                    if address is None:
                        sent += sock.sendmsg([view[sent:]], ancdata, _NOSIGNAL)
                    else:
                        sent += sock.sendmsg([view[sent:]], ancdata, 0, address)
                except BlockingIOError:
                    await self._wait_writable(fd)
                    waited = True
                    continue
                except OSError as exc:
                    if exc.errno == errno.EMSGSIZE:
                        raise OSError(
                            errno.EMSGSIZE,
                            f"{self.url}: send_fds failed: the message is "
                            f"{len(view)} bytes, too long for one {self._noun}",
                        ) from exc
                    if exc.errno not in SHORT_OF_MEMORY:
                        raise self._send_failure(exc) from exc
                    pause = await self._pause_for_memory(exc, pause)
                    waited = True
                    continue
                ancdata = []  # the descriptors went with the first bytes
                if whole or sent >= len(view):
                    break
        if not waited:
            await self._cancel_shielded_checkpoint()

    def _send_failure(self, exc: OSError) -> Exception:
        """What a failed ``sendmsg`` raises: a stream is broken."""
        return self._broken(exc)


class StreamFdPassing(MessageIO):
    """``send_fds``/``receive_fds`` of a connected AF_UNIX stream socket.

    A face sets ``_end_of_stream`` to the exception its streams raise at
    end of file (anyio's ``EndOfStream``); trio's return ``(b"", [])``.
    """

    _end_of_stream: type[Exception] | None = None

    async def send_fds(self, message: bytes, fds: Collection[int | IOBase]) -> None:
        """Send *message* (not empty) with the descriptors *fds* (ints, or
        files and sockets); the descriptors go with its first byte."""
        if not message:
            raise ValueError("message must not be empty")
        numbers = filenos(self.url, fds)
        if self._sock.family != getattr(socket, "AF_UNIX", None):
            raise not_unix(self.url)
        with self._send_conflict:
            await self._sendmsg(self._sock, self._fd, message, numbers, whole=False)

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        """Receive up to *msglen* bytes and at most *maxfds* descriptors.

        The descriptors are the caller's to close. More than *maxfds* (or
        more than fit): all closed, :class:`DescriptorsDropped` raised with
        the bytes. ``(b"", [])`` at end of file on the trio face; anyio's
        ``EndOfStream`` on the anyio face.
        """
        check_receive(msglen, maxfds)
        if self._sock.family != getattr(socket, "AF_UNIX", None):
            raise not_unix(self.url)
        with self._receive_conflict:
            message, fds, _, _, _ = await self._recvmsg(msglen, control_size(False))
        if len(fds) > maxfds:
            raise too_many(self.url, message, fds, maxfds)
        if not message and not fds and self._end_of_stream is not None:
            raise self._end_of_stream
        return message, fds


def truncated(url: URL, size: int, fds: list[int], noun: str) -> OSError:
    """A datagram or record longer than *size*: close its *fds*, say so."""
    close_all(fds)
    return OSError(
        errno.EMSGSIZE,
        f"{url}: receive failed: a {noun} of more than {size} bytes did not fit "
        "and was dropped (with any descriptors); receive with a larger size",
    )


def cut(data: bytes, flags: int, size: int) -> bool:
    """Was a datagram or record received into *size* + 1 bytes cut?"""
    return len(data) > size or bool(flags & _TRUNC)

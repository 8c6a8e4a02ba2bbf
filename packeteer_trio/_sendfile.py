"""``send_file``: a regular file's bytes to a stream, zero-copy where it can.

Two loops. :class:`SendFileIO`, a mixin for the streams over descriptors
(sockets, pipes), hands the kernel ``os.sendfile`` (Linux: sockets and
pipes; macOS and the BSDs: sockets), so the bytes go from the page cache to
the socket without entering Python; elsewhere, or where the kernel refuses
(a file system without sendfile support), it reads a chunk and writes it
with the same non-blocking syscalls the stream uses. Either way it counts
exactly what the kernel took. :func:`copy_file` is the plain read +
``send_all`` loop for the streams that have no descriptor of their own to
write to (a user scheme's stream, TLS, Windows pipe handles).

The file's position afterwards is ``offset`` plus the bytes sent, however
the call ended (as with :meth:`socket.socket.sendfile`): after an error or a
cancellation ``file.tell() - offset`` is what went out (on the copy loop,
what ``send_all`` finished). Reading a regular file blocks for as long as
the disk takes when the page is not cached, as ``asyncio``'s sendfile does.
"""

from __future__ import annotations

import errno
import io
import operator
import os
import socket
import stat
import sys
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from ._io import FIRST_PAUSE, FaceHooks
from ._url import URL

__all__ = [
    "CHUNK",
    "HAVE_SENDFILE",
    "SENDFILE_TO_PIPES",
    "SendFileIO",
    "check_file",
    "copy_file",
    "fd_writer",
    "socket_writer",
]

# At most this much per syscall, and a schedule point at least every CHUNK
# bytes: a stream whose peer keeps up never waits, and must still let the
# other tasks (and cancellation) in. Not one per call: each call takes only
# what fits in the socket buffer, and the relay's splice loop measured a
# checkpoint per call at ~8 % of its throughput (cli/_splice.py).
CHUNK = 1024 * 1024
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
# The kernel cannot sendfile from this file or to this descriptor: copy.
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK})
# Where os.sendfile takes a pipe (or any file) as its target, not just a socket.
SENDFILE_TO_PIPES = sys.platform == "linux"


def check_file(file: Any, offset: int, count: int | None, url: URL) -> int:
    """The descriptor of *file*, after checking all three arguments.

    Raises TypeError for something that is not a binary file with a
    descriptor, ValueError for a bad *offset*/*count* or a file that is not
    a regular file (a pipe or a socket has no offsets to send from). Any
    bytes a buffered writer still holds are flushed first.
    """
    _check_number("offset", offset, url)
    if count is not None:
        _check_number("count", count, url)
    if isinstance(file, io.TextIOBase) or "b" not in getattr(file, "mode", "b"):
        raise TypeError(f"{url}: send_file needs a file opened in binary mode")
    try:
        fd = file.fileno()
    except (AttributeError, io.UnsupportedOperation):
        raise TypeError(
            f"{url}: send_file needs a file object with a descriptor (fileno()), "
            f"not {type(file).__name__}"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise ValueError(
            f"{url}: send_file needs a regular file (no offsets to send from in a "
            "pipe, socket or device): copy it with receive_some + send_all"
        )
    flush = getattr(file, "flush", None)
    if flush is not None and getattr(file, "writable", bool)():
        flush()
    return int(fd)


def _check_number(name: str, value: int, url: URL) -> None:
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{url}: send_file {name} must be an int, not {type(value).__name__}"
        ) from None
    if number < 0:
        raise ValueError(f"{url}: send_file {name} must be >= 0, not {number}")


if sys.platform == "win32":  # pragma: no cover - no os.pread, no os.sendfile
    HAVE_SENDFILE = False

    def _sendfile(out_fd: int, in_fd: int, position: int, size: int) -> int:
        raise OSError(errno.ENOSYS, "no sendfile on Windows")

    def _read_at(file: Any, fd: int, position: int, size: int) -> bytes:
        file.seek(position)
        data: bytes = file.read(size)
        return data

else:
    HAVE_SENDFILE = True
    _sendfile = os.sendfile

    def _read_at(file: Any, fd: int, position: int, size: int) -> bytes:
        # pread leaves the descriptor's position (and the file object's
        # buffer, which caches it) alone until we seek at the end.
        return os.pread(fd, size, position)


class SendFileIO(FaceHooks):
    """``send_file`` for a stream over descriptors.

    The class says where to write: :meth:`_file_sink` returns the descriptor
    (raising the stream's closed error if it cannot send) and the
    non-blocking write for the copy loop; ``_sendfile_ok`` whether
    ``os.sendfile`` may target it on this platform.
    """

    _sendfile_ok: bool
    _file_sink: Callable[[], tuple[int, Callable[[memoryview], int]]]

    async def send_file(
        self, file: BinaryIO, offset: int = 0, count: int | None = None
    ) -> int:
        """Send *count* bytes (None: up to the end) of *file* from *offset*.

        *file* is a binary file object over a regular file. Returns the
        number of bytes sent, fewer than *count* only if the file ended
        first. Afterwards the file's position is ``offset`` plus that, even
        when cancelled or failing: the kernel took exactly those bytes, so a
        cancelled stream is still usable and
        ``send_file(file, file.tell())`` carries on.
        """
        in_fd = check_file(file, offset, count, self.url)
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            out_fd, write = self._file_sink()
            position = offset
            end = None if count is None else offset + count
            zero_copy = HAVE_SENDFILE and self._sendfile_ok
            unsent = memoryview(b"")  # the copy loop's chunk read, not yet written
            since_yield, yielded, pause = 0, False, FIRST_PAUSE
            try:
                while end is None or position < end:
                    size = CHUNK if end is None else min(CHUNK, end - position)
                    if not zero_copy and not unsent:
                        unsent = memoryview(_read_at(file, in_fd, position, size))
                        if not unsent:
                            break  # end of file
                    try:
                        if zero_copy:
                            # No MSG_NOSIGNAL here: a peer gone is EPIPE
                            # because Python ignores SIGPIPE (as os.write on
                            # pipes relies on too).
                            sent = _sendfile(out_fd, in_fd, position, size)
                            if not sent:
                                break  # end of file
                        else:
                            sent = write(unsent)
                            unsent = unsent[sent:]
                    except BlockingIOError:
                        await self._wait_writable(out_fd)
                        since_yield, yielded = 0, True
                        continue
                    except OSError as exc:
                        if (
                            zero_copy
                            and exc.errno in _NO_SENDFILE
                            and position == offset
                        ):
                            zero_copy = False  # nothing sent yet: copy instead
                            continue
                        pause = await self._pause_for_memory(exc, pause)
                        since_yield, yielded = 0, True
                        continue
                    position += sent
                    since_yield += sent
                    if since_yield >= CHUNK and (end is None or position < end):
                        await self._checkpoint()
                        since_yield, yielded = 0, True
                if not yielded:
                    await self._cancel_shielded_checkpoint()
            finally:
                file.seek(position)
            return position - offset


def socket_writer(sock: socket.socket) -> Callable[[memoryview], int]:
    def write(data: memoryview) -> int:
        return sock.send(data, _NOSIGNAL)

    return write


def fd_writer(fd: int) -> Callable[[memoryview], int]:
    def write(data: memoryview) -> int:
        return os.write(fd, data)

    return write


async def copy_file(
    send_all: Callable[[bytes], Awaitable[None]],
    checkpoint: Callable[[], Awaitable[None]],
    file: Any,
    offset: int,
    count: int | None,
    url: URL,
    chunk: int = CHUNK,
) -> int:
    """``send_file`` as a read + *send_all* loop, for streams without a
    descriptor to write to (*chunk* bytes a call). The position counts the
    chunks ``send_all`` finished: if it is cancelled midway, as with
    ``send_all`` the stream is broken and part of that chunk may have gone
    out."""
    check_file(file, offset, count, url)
    position = offset
    try:
        file.seek(offset)
        while count is None or position < offset + count:
            want = chunk if count is None else min(chunk, offset + count - position)
            # A fresh bytes object per chunk: a stream may keep what it is given.
            data = file.read(want)
            if not data:
                break
            await send_all(data)
            position += len(data)
        if position == offset:
            await checkpoint()  # nothing to send: still a checkpoint
    finally:
        file.seek(position)
    return position - offset

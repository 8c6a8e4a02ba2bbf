"""The trio face of Windows pipe HANDLEs: :class:`HandleStream` (Windows only).

:func:`._stream.stream_from_endpoint` imports this lazily, on Windows, for
endpoints that carry ``read_handle``/``write_handle`` (``pipe://``,
``anon://``).

Every operation is an overlapped call awaited on trio's completion port
(see :mod:`.._win32` for how cancellation is kept safe: a cancelled read or
write is cancelled with ``CancelIoEx`` and its completion awaited before the
task moves on, so no buffer is freed under the kernel and no byte read is
dropped).

Half-close. A named pipe has no ``shutdown(SHUT_WR)``. Our pipes are of
message type, read in message mode, so ``send_eof()`` writes a zero-length
message, which the peer's next read returns as 0 bytes: end of file, while
the other direction stays open. This is Microsoft's go-winio ``CloseWrite``
(used by Docker for its pipes); reading in message mode (as CPython's asyncio
and multiprocessing pipes do) means such an empty message can never be
merged into a larger read. A byte-type pipe made by someone else cannot carry
this: there ``send_eof()`` raises :class:`PacketeerError` (close instead).
An ``anon://`` pair has one handle per direction, so ``send_eof()`` closes
the write handle, as on POSIX.
"""

# ruff: noqa: E402  (imports follow the Windows-only guard on purpose)
from __future__ import annotations

import operator
import sys

if sys.platform != "win32":  # pragma: no cover - this is the POSIX case
    raise ImportError("packeteer_trio._trio._stream_windows is for Windows only")
assert sys.platform == "win32"  # for mypy: the rest is checked on win32 only

from typing import BinaryIO, final

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
)

import packeteer_trio._win32 as _win32

from .._buffer import Buffer
from .._endpoints import StreamEndpoint
from .._errors import PacketeerError
from .._fdio import DEFAULT_RECEIVE_SIZE
from .._io import ConflictDetector
from .._sendfile import copy_file
from .._url import URL
from .._winerror import ERROR_BROKEN_PIPE
from ._abc import Stream
from ._face import CLOSE as _CLOSE
from ._face import READ as _READ
from ._face import WRITE as _WRITE

_EMPTY = memoryview(b"")


@final
class HandleStream(Stream):
    """A stream over a Windows pipe HANDLE, or one HANDLE per direction.

    ``pipe://`` streams are duplex (one handle both ways); an ``anon://``
    stream reads from one handle and writes to the other, and
    :meth:`split` hands those to two one-way streams. ``fileno()`` is the
    HANDLE (as an int). The scheduler watches it with :meth:`_scheduler_wait`
    (trio's ``wait_readable`` takes only sockets on Windows).
    """

    def __init__(self, endpoint: StreamEndpoint) -> None:
        url = self.url = endpoint.url
        self._closed = False
        self._send_conflict = ConflictDetector(
            f"{url}: another task is already sending on this stream",
            trio.BusyResourceError,
        )
        self._receive_conflict = ConflictDetector(
            f"{url}: another task is already receiving from this stream",
            trio.BusyResourceError,
        )
        read, write = endpoint.read_handle, endpoint.write_handle
        self._reader = None if read is None else _win32.OwnedHandle(read)
        if write is not None and write == read:
            self._writer = self._reader
        else:
            self._writer = None if write is None else _win32.OwnedHandle(write)
        self._on_close = endpoint.on_close
        self._eof_sent = False
        self._eof_seen = False
        self._message_mode: bool | None = None  # the read mode, once asked

    @property
    def duplex(self) -> bool:
        """One handle for both directions (``pipe://``)."""
        return self._reader is not None and self._reader is self._writer

    def _closed_error(self) -> trio.ClosedResourceError:
        return trio.ClosedResourceError(f"{self.url}: this stream was closed")

    def _side_error(self, side: str) -> trio.ClosedResourceError:
        if self._closed:
            return self._closed_error()
        if side == "sending" and self._eof_sent:
            return trio.ClosedResourceError(f"{self.url}: send_eof() was called")
        return trio.ClosedResourceError(f"{self.url}: this end has no {side} side")

    def _error(
        self, exc: OSError
    ) -> trio.ClosedResourceError | trio.BrokenResourceError:
        if self._closed:
            return self._closed_error()
        return trio.BrokenResourceError(f"{self.url}: {exc.strerror or exc}")

    # -- sending ---------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_conflict:
            await checkpoint_if_cancelled()
            writer = self._writer
            if writer is None or writer.closing or self._eof_sent:
                raise self._side_error("sending")
            with memoryview(data) as view:
                if view.nbytes == 0:
                    # Never write 0 bytes: on a message pipe that is our EOF.
                    await cancel_shielded_checkpoint()
                    return
                if view.format != "B" or view.ndim != 1:
                    view = view.cast("B")
                try:
                    await _win32.write_all(writer, view)
                except OSError as exc:
                    raise self._error(exc) from exc

    async def send_file(
        self, file: BinaryIO, offset: int = 0, count: int | None = None
    ) -> int:
        """The read + ``send_all`` loop (Windows has no sendfile for pipes)."""
        return await copy_file(self.send_all, checkpoint, file, offset, count, self.url)

    async def wait_send_all_might_not_block(self) -> None:
        # An overlapped write never blocks the thread and a pipe gives no
        # "writable" signal, so, like trio's own Windows pipes, this only
        # checks the state and checkpoints.
        with self._send_conflict:
            writer = self._writer
            if writer is None or writer.closing or self._eof_sent:
                raise self._side_error("sending")
            await checkpoint()

    async def send_eof(self) -> None:
        with self._send_conflict:
            await checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            writer = self._writer
            if self._eof_sent or writer is None:
                await cancel_shielded_checkpoint()
                return
            if not self.duplex:
                self._eof_sent = True
                self._writer = None
                writer.close()
                await cancel_shielded_checkpoint()
                return
            if not _win32.is_message_pipe(writer.handle):
                await cancel_shielded_checkpoint()
                raise PacketeerError(
                    f"{self.url}: this is a byte-type pipe (not made by packeteer), "
                    "which cannot carry a half-close (send_eof); close the stream "
                    "when done instead"
                )
            try:
                await _win32.write_all(writer, _EMPTY)
            except OSError as exc:
                raise self._error(exc) from exc
            self._eof_sent = True

    # -- receiving -------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = DEFAULT_RECEIVE_SIZE if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        buffer = bytearray(size)
        with memoryview(buffer) as view:
            count = await self._receive(view)
            return bytes(view[:count])

    async def receive_into(self, buffer: Buffer) -> int:
        with memoryview(buffer) as view:
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            if not view.nbytes:
                raise ValueError("receive_into() needs a non-empty buffer")
            return await self._receive(view)

    async def _receive(self, view: memoryview) -> int:
        with self._receive_conflict:
            await checkpoint_if_cancelled()
            reader = self._reader
            if reader is None or reader.closing:
                raise self._side_error("receiving")
            if self._eof_seen:
                await cancel_shielded_checkpoint()
                return 0
            try:
                count = await _win32.read_into(reader, view)
            except OSError as exc:
                if self._closed:  # another task closed us mid-read
                    raise self._closed_error() from exc
                if exc.winerror != ERROR_BROKEN_PIPE:
                    raise self._error(exc) from exc
                # The peer closed its end and everything it wrote was read.
                # (A synchronous failure took no schedule point: take one.)
                count = 0
                await cancel_shielded_checkpoint()
            if count == 0:
                self._eof_seen = True  # an empty message or a closed peer
            return count

    # -- the rest --------------------------------------------------------------

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            # Pending operations are cancelled now; each handle is closed as
            # soon as its last operation has completed (see OwnedHandle).
            owners = [o for o in (self._reader, self._writer) if o is not None]
            for owned in dict.fromkeys(owners):  # a duplex pipe's handle once
                owned.close()
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close()
        await checkpoint()

    def split(self) -> tuple[HandleStream, HandleStream]:
        """An ``anon://`` stream's two directions as ``(send, receive)`` streams.

        This stream is closed afterwards and the new ones own the handles.
        A duplex ``pipe://`` stream has one handle and cannot be split.
        """
        if self._closed:
            raise self._closed_error()
        if self.duplex:
            raise PacketeerError(f"{self.url}: a duplex pipe has one handle to split")
        send = HandleStream(StreamEndpoint(self.url))
        receive = HandleStream(StreamEndpoint(self.url))
        send._writer, send._eof_sent = self._writer, self._eof_sent
        receive._reader, receive._eof_seen = self._reader, self._eof_seen
        receive._on_close, self._on_close = self._on_close, None
        self._reader = self._writer = None
        self._closed = True
        return send, receive

    def fileno(self) -> int:
        for owned in (self._reader, self._writer):
            if owned is not None and not owned.closing:
                return owned.handle
        return -1

    @property
    def local_address(self) -> URL:
        return self.url

    @property
    def peer_address(self) -> URL:
        return self.url

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        if self._closed:
            raise self._closed_error()
        reader, writer = self._reader, self._writer
        if writer is not None and (writer.closing or self._eof_sent):
            writer = None
        return (
            None if reader is None or reader.closing else reader.handle,
            None if writer is None else writer.handle,
        )

    async def _scheduler_wait(self, read: bool) -> int:
        """The scheduler's wait on a pipe handle (trio's ``wait_readable``
        takes only sockets on Windows): READ once data or the end of file is
        there (with CLOSE for the end of file), WRITE at once (an overlapped
        write never blocks the thread, as in ``wait_send_all_might_not_block``).
        Each answer carries WRITE while there is a write side, as a poll of
        both directions would.
        """
        owned = self._reader if read else self._writer
        if self._closed or owned is None or owned.closing:
            await checkpoint()
            raise trio.ClosedResourceError(f"{self.url}: closed")
        if not read:
            await checkpoint()
            return self._writable()
        if self._eof_seen:
            await checkpoint()
            return _READ | _CLOSE | self._writable()
        if self._message_mode is None:
            self._message_mode = _win32.is_message_pipe(owned.handle)
        try:
            if await _win32.wait_for_data(owned, message_mode=self._message_mode):
                return _READ | self._writable()
            self._eof_seen = True  # it consumed the peer's zero-length message
        except OSError as exc:
            if self._closed:
                raise trio.ClosedResourceError(f"{self.url}: closed") from exc
            if exc.winerror != ERROR_BROKEN_PIPE:
                raise self._error(exc) from exc
            await cancel_shielded_checkpoint()  # a synchronous failure waited not
        return _READ | _CLOSE | self._writable()

    def _writable(self) -> int:
        """WRITE while there is a write side (asked after a wait, not before)."""
        writer = self._writer
        return 0 if writer is None or writer.closing or self._eof_sent else _WRITE

    def __repr__(self) -> str:
        return f"<HandleStream {self.url}{' closed' if self._closed else ''}>"

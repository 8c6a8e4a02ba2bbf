"""The read-ahead engine on the loop's ``add_reader``/``add_writer``.

Plain asyncio's selector loop (TCP and AF_UNIX) and uvloop (AF_UNIX): the
loop calls :meth:`_Selecting._readable` whenever the socket is readable and
the buffer of :mod:`._readahead` has room. In bulk flow (big chunks) the
reader steps aside and ``receive`` reads in the caller's task, which costs
less than a callback per chunk. AF_UNIX sockets are read with ``recvmsg``,
so descriptors a peer passes stay with the bytes they came with. Every
write passes ``MSG_NOSIGNAL``.
"""

from __future__ import annotations

import array
import socket
import sys
from collections.abc import Collection
from io import IOBase
from typing import Any, final

import anyio.abc

from .._errors import PacketeerError
from .._fdpass import too_many
from .._io import SHORT_OF_MEMORY
from .._url import URL
from ._abc import Stream
from ._readahead import (
    BUDGET,
    OP_COST,
    READ_SIZE,
    STREAMING,
    ReadAheadBuffer,
    close_fd,
    yield_now,
)

_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
# Linux's SCM_MAX_FD: the most descriptors one sendmsg() can pass.
_MAX_FDS = 253
_FD_SPACE = socket.CMSG_SPACE(_MAX_FDS * 4) if hasattr(socket, "CMSG_SPACE") else 0
_BYTES_TYPES = (bytes, bytearray)


class _Selecting(ReadAheadBuffer):
    """The engine on the loop's ``add_reader``/``add_writer``."""

    def _start_reading(self) -> None:
        # While registered, the loop's reader callback holds the stream: one
        # never closed stays registered (and its fd open) until the loop
        # closes, never a stale number in the selector.
        self._reading = True
        self._loop.add_reader(self._fd, self._readable)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def _readable(self, size: int = READ_SIZE) -> None:
        # A full read says more is waiting: read on (up to the high-water
        # mark) in this one callback, rather than one read per loop turn.
        while True:
            try:
                data = self._recv(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in SHORT_OF_MEMORY:  # else readable: called again
                    self._failed(exc)
                return
            self._received(data)
            # Big chunks mean bulk flow: then receive reads directly (see
            # _wait_for_data), which costs less than a callback per chunk.
            self._streaming = len(data) >= STREAMING
            if self._streaming:
                self._stop_reading()
            if len(data) < size or not self._reading:
                return

    def _read_now(self, size: int) -> bytes | None:
        # A plain recv, also on AF_UNIX: the buffer is empty and receive()
        # takes all of what this returns, so descriptors that came with it
        # are closed either way (the kernel closes them for recv).
        try:
            data = self._sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno not in SHORT_OF_MEMORY:
                self._failed(exc)
            return None
        self._streaming = len(data) >= STREAMING
        if self._streaming and not self._fd_marks:
            # Bulk flow goes past the buffer (it is empty: order is kept).
            self._read_total += len(data)
            self._taken_total += len(data)
            return data
        self._received(data)
        return None

    async def send(self, item: bytes) -> None:
        conflict = self._send_conflict  # inline: see ConflictDetector
        if conflict.held:
            raise conflict.busy()
        conflict.held = True
        try:
            # The schedule point, before anything moves.
            self._budget -= OP_COST + len(item)
            if self._budget <= 0:
                self._budget = BUDGET
                await yield_now()
            if self._closed or self._did_shutdown:
                raise self._closed_error()
            data: Any = item
            if not isinstance(data, _BYTES_TYPES):
                data = memoryview(data).cast("B")
            try:
                sent = self._sock.send(data, _NOSIGNAL)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                if exc.errno not in SHORT_OF_MEMORY:
                    raise self._broken(exc) from exc
                sent = 0
            if sent < len(data):
                await self._send_rest(data, sent)
        finally:
            conflict.held = False

    async def _send_rest(self, data: Any, sent: int) -> None:
        with memoryview(data) as view:
            while sent < len(view):
                await self._until_writable(self._fd)
                try:
                    sent += self._sock.send(view[sent:], _NOSIGNAL)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno not in SHORT_OF_MEMORY:
                        raise self._broken(exc) from exc
                    await self._sleep(0.001)

    async def aclose(self) -> None:
        if not self._closed:
            self._stop_reading()
            self._loop.remove_writer(self._fd)
            self._close_buffer()
            self._sock.close()
            self._run_on_close()
        await yield_now()


def _no_af_unix(url: URL) -> PacketeerError:
    return PacketeerError(f"{url}: descriptors pass only over AF_UNIX (POSIX)")


@final
class ReadAheadSocketStream(_Selecting, anyio.abc.SocketStream, Stream):
    """A connected IP socket read ahead by the loop (plain asyncio)."""


@final
class ReadAheadUNIXSocketStream(_Selecting, anyio.abc.UNIXSocketStream, Stream):
    """A connected AF_UNIX socket read ahead by the loop; passes descriptors."""

    def _recv(self, size: int) -> bytes:
        if sys.platform == "win32":  # pragma: no cover - CPython has no AF_UNIX there
            raise _no_af_unix(self.url)
        data, ancdata, _flags, _address = self._sock.recvmsg(size, _FD_SPACE, _CLOEXEC)
        if ancdata:
            fds = array.array("i")
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            if data:
                self._fd_marks.append((self._read_total, list(fds)))
            else:  # descriptors without bytes: nothing could return them
                for fd in fds:
                    close_fd(fd)
        return data

    async def send_fds(self, message: bytes, fds: Collection[int | IOBase]) -> None:
        if sys.platform == "win32":  # pragma: no cover - CPython has no AF_UNIX there
            raise _no_af_unix(self.url)
        if not message:
            raise ValueError("message must not be empty")
        if not fds:
            raise ValueError("fds must not be empty")
        filenos = [fd if isinstance(fd, int) else fd.fileno() for fd in fds]
        ancdata = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", filenos))]
        with self._send_conflict:
            await yield_now()
            if self._closed or self._did_shutdown:
                raise self._closed_error()
            with memoryview(message) as view:
                sent = 0
                while sent < len(view):
                    try:
                        sent += self._sock.sendmsg([view[sent:]], ancdata, _NOSIGNAL)
                    except BlockingIOError:
                        await self._until_writable(self._fd)
                        continue
                    except OSError as exc:
                        if exc.errno not in SHORT_OF_MEMORY:
                            raise self._broken(exc) from exc
                        await self._sleep(0.001)
                        continue
                    ancdata = []  # the descriptors went with the first write

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        if sys.platform == "win32":  # pragma: no cover - CPython has no AF_UNIX there
            raise _no_af_unix(self.url)
        if not isinstance(msglen, int) or msglen < 0:
            raise ValueError("msglen must be a non-negative integer")
        if not isinstance(maxfds, int) or maxfds < 1:
            raise ValueError("maxfds must be a positive integer")
        with self._receive_conflict:
            if self._chunks and not self._closed:
                await yield_now()
            else:
                await self._wait_for_data()
            # The descriptors that came with the next bytes are ours: taken
            # off first, so that _take does not close them.
            marks, fds = self._fd_marks, []
            while marks and marks[0][0] <= self._taken_total:
                fds += marks.popleft()[1]
            message = self._take(msglen) if msglen else b""
        if len(fds) > maxfds:  # all closed, the bytes kept, as _fdpass does
            raise too_many(self.url, message, fds, maxfds)
        return message, fds

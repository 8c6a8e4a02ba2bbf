"""stdin and stdout as trio byte sources and sinks.

Pipes and sockets wait in trio's I/O loop (POSIX); a tty, a regular file and
everything on Windows go through a worker thread or plain writes.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import BinaryIO

import trio

if sys.platform == "win32":  # pragma: no cover

    def _pollable(fd: int) -> trio.abc.Stream | None:
        return None  # no FdStream: stdio goes through threads

else:

    def _pollable(fd: int) -> trio.abc.Stream | None:
        """A trio stream over a copy of *fd* if it is a pipe or a socket.

        Those can wait in trio's I/O loop. A tty is shared with the shell
        (non-blocking mode would leak to it) and a regular file is never "not
        ready", so those go through a worker thread or plain writes instead.
        """
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return None
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            return trio.lowlevel.FdStream(os.dup(fd))
        return None


class _ThreadRead:
    """One ``os.read`` in a worker thread that outlives a cancelled reader.

    A blocked ``read()`` cannot be interrupted, so a cancelled caller
    abandons the thread; its result waits here for the next caller instead of
    being lost (``cat -lk`` moves on to the next client while a line typed on
    the tty is still on its way).
    """

    def __init__(self, fd: int, max_bytes: int) -> None:
        self.done = trio.Event()
        self.data = b""
        self.error: OSError | None = None
        trio.lowlevel.spawn_system_task(self._read, fd, max_bytes)

    async def _read(self, fd: int, max_bytes: int) -> None:
        try:
            # Abandoned at the end of the run: Ctrl-C ends us at once.
            self.data = await trio.to_thread.run_sync(
                os.read, fd, max_bytes, abandon_on_cancel=True
            )
        except OSError as exc:
            self.error = exc
        self.done.set()


class StdinSource:
    """``await read()`` returns the next chunk of stdin, ``b""`` at end of file
    (and from then on). Cancelling a read loses no data."""

    def __init__(self) -> None:
        self._fd = -1 if sys.stdin is None else sys.stdin.fileno()
        self._stream = _pollable(self._fd) if self._fd >= 0 else None
        self._pending: _ThreadRead | None = None
        self._eof = self._fd < 0

    def regular_file(self) -> BinaryIO | None:
        """stdin as a file object if it is a regular file (``< bigfile``), for
        ``send_file``; it shares stdin's offset, which starts where stdin is
        and moves as sending goes (as reading would). None otherwise."""
        if self._eof or self._pending is not None:
            return None
        try:
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                return None
        except OSError:
            return None
        return open(self._fd, "rb", buffering=0, closefd=False)

    def ended(self) -> None:
        """The caller sent the rest of stdin some other way: it is at its end."""
        self._eof = True

    async def read(self, max_bytes: int = 65536) -> bytes | bytearray:
        if self._eof:
            await trio.lowlevel.checkpoint()
            return b""
        if self._stream is not None:
            data = await self._stream.receive_some(max_bytes)
        else:
            if self._pending is None:
                self._pending = _ThreadRead(self._fd, max_bytes)
            await self._pending.done.wait()
            pending, self._pending = self._pending, None
            if pending.error is not None:
                raise pending.error
            data = pending.data
        self._eof = not data
        return data

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()


class StdoutSink:
    """``await write(data)`` writes all of *data* to stdout."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._fd = sys.stdout.fileno()
        self._stream = _pollable(self._fd)

    async def write(self, data: bytes | bytearray) -> None:
        try:
            if self._stream is not None:
                await self._stream.send_all(data)
                return
            view = memoryview(data)
            while view:  # a tty or a file: fast, and blocking is what it does
                view = view[os.write(self._fd, view) :]
        except (trio.BrokenResourceError, BrokenPipeError) as exc:
            raise trio.BrokenResourceError("stdout was closed by its reader") from exc
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()


class AsyncLines:
    """Iterate stdin line by line (without the line ending)."""

    def __init__(self, source: StdinSource) -> None:
        self._source = source
        self._buffer = b""
        self._eof = False

    def __aiter__(self) -> AsyncLines:
        return self

    async def __anext__(self) -> bytes:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line, self._buffer = (
                    self._buffer[:newline],
                    self._buffer[newline + 1 :],
                )
                return line.removesuffix(b"\r")
            if self._eof:
                if self._buffer:
                    line, self._buffer = self._buffer, b""
                    return line
                raise StopAsyncIteration
            chunk = await self._source.read()
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True

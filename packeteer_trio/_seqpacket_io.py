"""The loops of ``local://…?behaviour=seqpacket`` (SOCK_SEQPACKET), both faces.

A connected AF_UNIX socket that keeps message boundaries: one ``send`` is one
record, one ``receive`` returns one record whole. A record longer than the
size asked for is an ``OSError(EMSGSIZE)`` (the kernel dropped its tail, so
the record is reported and gone, as a too-long datagram), never silently
cut. End of file is a receive of 0 bytes, which a zero-length record would
look like too: sending an empty record is refused (ValueError).

The trio face's channel is a :class:`trio.abc.Channel` of records *and* a
byte stream (``send_all``/``receive_some``, so that ``connect()`` keeps its
promise of a Stream): ``receive_some(n)`` hands out a record in parts of at
most *n* bytes, keeping the rest for the next call.
"""

from __future__ import annotations

import errno
import operator
import socket
from collections.abc import Collection
from io import IOBase
from typing import Any

from ._endpoints import StreamEndpoint
from ._fdpass import (
    MessageIO,
    check_receive,
    control_size,
    cut,
    filenos,
    too_many,
    truncated,
)
from ._io import FIRST_PAUSE, SHORT_OF_MEMORY, SocketEnd

# Records up to this size need no max_size (the kernel's default send buffer,
# ~208 KiB on Linux, is the usual bound on one record).
DEFAULT_MAX_RECORD = 262144
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
Data = bytes | bytearray | memoryview


class SeqpacketIO(MessageIO, SocketEnd):
    """send / receive of whole records, descriptors with them (``send_eof``:
    no more records from this end; it and closing are :class:`SocketEnd`'s).

    A face sets ``_end_of_channel`` (``trio.EndOfChannel``,
    ``anyio.EndOfStream``): what ``receive`` raises at end of file.
    """

    _noun = "channel"
    _end_of_channel: type[Exception]

    def _init_seqpacket(self, endpoint: StreamEndpoint) -> None:
        self._init_socket(endpoint)
        self._rest = b""  # what receive_some has not handed out yet

    async def _send_record(self, data: Data) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed or self._did_shutdown:
                raise self._closed_error()
            if not data:
                raise ValueError(
                    f"{self.url}: an empty record would read as end of file"
                )
            waited, pause = False, FIRST_PAUSE
            while True:
                try:
                    self._sock.send(data, _NOSIGNAL)  # all of it, or nothing
                    break
                except BlockingIOError:
                    await self._wait_writable(self._fd)
                    waited = True
                except OSError as exc:
                    if exc.errno == errno.EMSGSIZE:
                        size = memoryview(data).nbytes
                        raise OSError(
                            errno.EMSGSIZE,
                            f"{self.url}: send failed: the record is {size} "
                            "bytes, more than the socket's send buffer holds",
                        ) from exc
                    if exc.errno not in SHORT_OF_MEMORY:
                        raise self._broken(exc) from exc
                    pause = await self._pause_for_memory(exc, pause)
                    waited = True
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def _receive_record(self, size: int) -> bytes:
        """One record of at most *size* bytes; b"" at end of file."""
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            if self._rest:
                data, self._rest = self._rest, b""
                await self._cancel_shielded_checkpoint()
                return data
            waited, pause = False, FIRST_PAUSE
            while True:
                try:
                    data = self._sock.recv(size + 1)
                    break
                except BlockingIOError:
                    await self._wait_readable(self._fd)
                    waited = True
                except OSError as exc:
                    pause = await self._pause_for_memory(exc, pause)
                    waited = True
            if not waited:
                await self._cancel_shielded_checkpoint()
            if len(data) > size:
                raise truncated(self.url, size, [], "record")
            return data

    async def _receive_one(self, max_size: int | None) -> bytes:
        """One record, whole; OSError(EMSGSIZE) if it is over *max_size*
        (default 256 KiB). End of file raises the face's end-of-channel."""
        size = DEFAULT_MAX_RECORD if max_size is None else operator.index(max_size)
        if size < 1:
            raise ValueError("max_size must be >= 1")
        data = await self._receive_record(size)
        if not data:
            raise self._end_of_channel
        return data

    async def send_fds(self, message: bytes, fds: Collection[int | IOBase]) -> None:
        """Send one record *message* with the descriptors *fds*."""
        if not message:
            raise ValueError("message must not be empty")
        numbers = filenos(self.url, fds)
        with self._send_conflict:
            await self._sendmsg(self._sock, self._fd, message, numbers, whole=True)

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        """One record of at most *msglen* bytes with at most *maxfds*
        descriptors (yours to close); end of file as ``receive()``."""
        check_receive(msglen, maxfds)
        with self._receive_conflict:
            if self._rest:
                raise self._closed_exception(
                    f"{self.url}: receive_some() left part of a record unread"
                )
            data, fds, _, flags, _ = await self._recvmsg(
                msglen + 1, control_size(False)
            )
        if cut(data, flags, msglen):
            raise truncated(self.url, msglen, fds, "record")
        if len(fds) > maxfds:
            raise too_many(self.url, data, fds, maxfds)
        if not data and not fds:
            raise self._end_of_channel
        return data, fds

    # -- the byte-stream view (trio's Stream) ------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to *max_bytes* of the next record (the rest comes next); b""
        at end of file."""
        size = 65536 if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        data = await self._receive_record(max(size, DEFAULT_MAX_RECORD))
        if len(data) > size:
            data, self._rest = data[:size], data[size:]
        return data

    async def receive_into(self, buffer: Any) -> int:
        with memoryview(buffer) as view, view.cast("B") as target:
            data = await self.receive_some(len(target))
            target[: len(data)] = data
        return len(data)

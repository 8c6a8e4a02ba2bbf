"""The trio face of ``local://…?behaviour=seqpacket``: a Channel of records
that is a Stream too (the loops are :mod:`.._seqpacket_io`'s)."""

from __future__ import annotations

from typing import BinaryIO, final

import trio

from .._endpoints import StreamEndpoint
from .._sendfile import copy_file
from .._seqpacket_io import Data, SeqpacketIO
from .._url import URL
from ._abc import Stream
from ._connected import ConnectedSocket
from ._face import TRIO

# What send_file puts in one record.
RECORD = 64 * 1024


@final
class SeqpacketChannel(SeqpacketIO, ConnectedSocket, Stream, trio.abc.Channel[bytes]):
    """A connected SOCK_SEQPACKET socket: ``send(record)``/``receive()``.

    A :class:`trio.abc.Channel` of ``bytes``, one record each, whole:
    ``receive()`` raises ``EndOfChannel`` once the peer sent EOF (or
    closed) and ``OSError(EMSGSIZE)`` for a record over ``max_size``
    (keyword-only, default 256 KiB; that record is dropped). Also a
    :class:`Stream` (what ``connect()`` promises): ``send_all`` sends one
    record, ``receive_some(n)`` hands a record out in parts of at most *n*
    bytes. ``send_fds``/``receive_fds`` carry descriptors with a record;
    ``send_eof()`` ends our direction. Iterating yields whole records.
    """

    _shown_as = "SeqpacketChannel"
    _end_of_channel = trio.EndOfChannel
    url: URL

    def __init__(self, endpoint: StreamEndpoint) -> None:
        url = self.url = endpoint.url
        self._closed = False
        self._on_close = endpoint.on_close
        self._bind(TRIO)
        self._conflicts(
            TRIO,
            f"{url}: another task is already sending on this channel",
            f"{url}: another task is already receiving from this channel",
        )
        self._init_seqpacket(endpoint)

    async def send(self, value: Data) -> None:
        """Send one record (not empty: that would read as end of file)."""
        await self._send_record(value)

    async def receive(self, *, max_size: int | None = None) -> bytes:
        """One record, whole (keyword-only *max_size*: the ABC's receive()
        takes no argument)."""
        return await self._receive_one(max_size)

    async def send_all(self, data: Data) -> None:
        """Send *data* as one record; nothing for empty data (a checkpoint)."""
        if not data:
            await self._checkpoint()
            if self._closed or self._did_shutdown:
                raise self._closed_error()
            return
        await self._send_record(data)

    async def send_file(
        self, file: BinaryIO, offset: int = 0, count: int | None = None
    ) -> int:
        """The file as records of at most 64 KiB (a record is sent whole,
        so a larger one could exceed the socket's buffer); a read +
        ``send_all`` loop, cancelled as ``send_all`` is."""
        return await copy_file(
            self.send_all, self._checkpoint, file, offset, count, self.url, RECORD
        )

    def __aiter__(self) -> SeqpacketChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._receive_one(None)
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

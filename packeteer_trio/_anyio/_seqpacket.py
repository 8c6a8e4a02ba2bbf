"""The anyio face of ``local://…?behaviour=seqpacket``: an object stream of
records that is a byte stream too (the loops are :mod:`.._seqpacket_io`'s)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, final

import anyio
import anyio.abc

from .._endpoints import StreamEndpoint
from .._seqpacket_io import SeqpacketIO
from .._sockinfo import peer_credentials
from .._url import URL
from ._abc import Stream
from ._backend import Backend, socket_attributes


@final
class SeqpacketStream(SeqpacketIO, anyio.abc.ObjectStream[bytes], Stream):
    """A connected SOCK_SEQPACKET socket: ``send(item)``/``receive()``, one
    record each, whole.

    An :class:`anyio.abc.ObjectStream` of ``bytes`` and (what ``connect()``
    promises) an :class:`anyio.abc.ByteStream` whose ``receive(max_bytes)``
    never cuts a record: one over *max_bytes* (default 65536, anyio's) is an
    ``OSError(EMSGSIZE)`` and dropped. ``EndOfStream`` once the peer sent
    EOF or closed; ``send_eof()`` ends our direction; ``send_fds`` and
    ``receive_fds`` carry descriptors with a record.
    """

    _end_of_channel = anyio.EndOfStream
    url: URL

    def __init__(self, endpoint: StreamEndpoint, backend: Backend) -> None:
        self.url = endpoint.url
        self._closed = False
        self._on_close = endpoint.on_close
        self._bind(backend)
        self._conflicts(backend, "sending to", "receiving from")
        self._init_seqpacket(endpoint)

    def send(self, item: bytes) -> Coroutine[Any, Any, None]:
        """Send one record (not empty: that would read as end of file)."""
        return self._send_record(item)

    def receive(self, max_bytes: int = 65536) -> Coroutine[Any, Any, bytes]:
        """One record, whole; OSError(EMSGSIZE) if over *max_bytes*."""
        return self._receive_one(max_bytes)

    def __aiter__(self) -> SeqpacketStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._receive_one(65536)
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def peer_credentials(self) -> tuple[int, int, int]:
        """``(pid, uid, gid)`` of the peer process."""
        return peer_credentials(self._sock, self.url)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return socket_attributes(self._sock, self.url)

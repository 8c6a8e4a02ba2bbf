"""The read-ahead engine on the loop's own transport (uvloop's TCP).

uvloop reads a transport in C and hands the bytes to ``data_received``: per
round trip that is cheaper than a Python reader callback calling
``recv()`` (measured: benchmarks/README.md). The stream is the one of
:mod:`._readahead` (bounded buffer, reading paused above the high-water
mark, nothing lost on cancellation); this module adds the transport.

Sending: while the transport's buffer is empty (always, unless a ``send``
was cancelled half-way) the bytes go straight to the kernel with
``MSG_NOSIGNAL``, as everywhere else; what the kernel does not take goes to
the transport, and ``send`` waits until it is flushed (a write-buffer limit
of 0), so that a finished ``send`` means what it means with trio: the bytes
are in the kernel. uvloop flushes that rest with ``write(2)``, without
``MSG_NOSIGNAL``: a SIGPIPE could come only if the peer vanished while the
kernel's buffer was full, and Python ignores SIGPIPE unless told otherwise.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, final

import anyio.abc

from .._endpoints import StreamEndpoint
from ._abc import Stream
from ._backend import Backend
from ._readahead import BUDGET, OP_COST, ReadAheadBuffer, yield_now

_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)


class _Feed(asyncio.Protocol):
    """Hands the transport's events to the stream; ``data_received`` is the
    stream's own bound method (no extra call per chunk)."""

    def __init__(self, stream: TransportSocketStream) -> None:
        self._stream = stream
        self.data_received = stream._received  # type: ignore[method-assign]

    def connection_made(self, transport: Any) -> None:
        # Not a single read before the first receive (see ReadAheadBuffer).
        transport.pause_reading()
        transport.set_write_buffer_limits(0)

    def eof_received(self) -> bool:
        self._stream._received(b"")
        return True  # keep our half open: the peer may still read

    def connection_lost(self, exc: Exception | None) -> None:
        self._stream._lost(exc)

    def pause_writing(self) -> None:
        self._stream._write_paused = True

    def resume_writing(self) -> None:
        stream = self._stream
        stream._write_paused = False
        waiter = stream._sender
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@final
class TransportSocketStream(ReadAheadBuffer, anyio.abc.SocketStream, Stream):
    """A connected IP socket read ahead by the loop's transport (uvloop)."""

    _transport: asyncio.Transport
    _write_paused = False
    _gone = False  # the transport closed under us (reset, or the peer left)

    @classmethod
    async def open(
        cls, endpoint: StreamEndpoint, backend: Backend
    ) -> TransportSocketStream:
        """The stream on a transport; the transport owns the socket then."""
        self = cls(endpoint, backend)
        transport, _ = await self._loop.connect_accepted_socket(
            lambda: _Feed(self), self._sock
        )
        self._transport = transport
        return self

    def _start_reading(self) -> None:
        self._reading = True
        self._transport.resume_reading()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            if not (self._closed or self._eof or self._gone):
                self._transport.pause_reading()

    def _lost(self, exc: Exception | None) -> None:
        self._gone = True
        if self._closed:
            return
        if isinstance(exc, OSError):
            self._failed(exc)
        else:
            if not self._eof:
                self._received(b"")
            self._wake()

    def _gone_error(self) -> Exception:
        if self._error is not None:
            return self._broken(self._error)
        return self._broken_exception(f"{self.url}: the connection is gone")

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
            if self._gone:
                raise self._gone_error()
            transport = self._transport
            if transport.get_write_buffer_size():
                transport.write(item)
            else:
                try:
                    sent = self._sock.send(item, _NOSIGNAL)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    raise self._broken(exc) from exc
                if sent < len(item):
                    transport.write(memoryview(item)[sent:])
            while self._write_paused:
                self._budget = BUDGET
                self._sender = waiter = self._loop.create_future()
                try:
                    await waiter
                finally:
                    self._sender = None
                if self._closed:
                    raise self._closed_error()
                if self._gone:
                    raise self._gone_error()
        finally:
            conflict.held = False

    async def send_eof(self) -> None:
        with self._send_conflict:
            await yield_now()
            if self._closed:
                raise self._closed_error()
            if self._did_shutdown or self._gone:
                return
            self._did_shutdown = True
            self._transport.write_eof()  # after what the transport still holds

    async def aclose(self) -> None:
        if not self._closed:
            self._close_buffer()
            self._transport.abort()  # closes the socket on the next loop turn
            self._run_on_close()
        await yield_now()

"""The inproc:// stream loops, shared by both faces: bytes through memory.

The ends (:mod:`._inproc`) hold the data; these mixins move it with the
face's checkpoints and exceptions (:class:`._io.Face`) and park on the
face's event (``new_waker``) where a socket loop would wait for readiness.
The checkpoint sandwich is the socket loops': ``checkpoint_if_cancelled``
first, and if nothing had to wait, ``cancel_shielded_checkpoint`` once the
bytes are moved, so a cancellation never loses data that was taken.
"""

from __future__ import annotations

import operator
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ._errors import PacketeerError
from ._inproc import BytePipe, InprocListenerEnd, InprocStreamEnd
from ._io import ConflictDetector, Face, FaceHooks
from ._url import URL

DEFAULT_RECEIVE = 65536
Data = bytes | bytearray | memoryview


class Event(Protocol):
    def set(self) -> None: ...

    def wait(self) -> Awaitable[Any]: ...


NewWaker = Callable[[], Event]


def no_descriptor(url: URL, what: str = "file descriptor") -> OSError:
    """What ``fileno()``, ``socket`` and the socket options raise: an
    :class:`io.UnsupportedOperation`, as for an in-memory file."""
    import io

    return io.UnsupportedOperation(
        f"{url}: inproc:// has no {what}: it lives in memory"
    )


def no_scheduler_fds(url: URL) -> PacketeerError:
    return PacketeerError(
        f"{url}: inproc:// has no descriptor whose readiness the scheduler could "
        "watch; use a task that awaits it instead"
    )


class InprocHooks(FaceHooks):
    """A face's primitives plus its event, bound into an inproc object."""

    _new_waker: NewWaker

    def _init_inproc(self, url: URL, face: Face, new_waker: NewWaker) -> None:
        self.url = url
        self._closed = False
        self._on_close = None
        self._bind(face)
        self._conflicts(
            face,
            f"{url}: another task is already sending on this {self._noun}",
            f"{url}: another task is already receiving from this {self._noun}",
        )
        self._new_waker = new_waker


class InprocStreamIO(InprocHooks):
    """send_all / receive_some / send_eof / aclose over two byte pipes."""

    _end: InprocStreamEnd

    def _init_stream(self, end: InprocStreamEnd, face: Face, new: NewWaker) -> None:
        self._init_inproc(end.url, face, new)
        self._end = end

    def _check_sendable(self, pipe: BytePipe) -> None:
        if self._closed:
            raise self._closed_error()
        if pipe.eof:
            raise self._closed_exception(f"{self.url}: send_eof() was called")
        if pipe.reader_gone:
            raise self._broken_exception(f"{self.url}: the peer closed its end")

    async def send_all(self, data: Data) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            pipe = self._end.outgoing
            view = memoryview(data)
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            total, sent, waited = len(view), 0, False
            try:
                while True:
                    self._check_sendable(pipe)
                    room = pipe.capacity - len(pipe.buffer)
                    if room > 0 and sent < total:
                        end = min(total, sent + room)
                        pipe.buffer += view[sent:end]
                        sent = end
                        pipe.wake_reader()
                    if sent >= total:
                        break
                    waker = pipe.writer = self._new_waker()
                    await waker.wait()
                    waited = True
            finally:
                view.release()  # the caller's buffer is theirs again
            if not waited:
                await self._cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            pipe = self._end.outgoing
            while True:
                if self._closed:
                    raise self._closed_error()
                if pipe.eof or pipe.reader_gone or len(pipe.buffer) < pipe.capacity:
                    break
                waker = pipe.writer = self._new_waker()
                await waker.wait()
            await self._cancel_shielded_checkpoint()

    async def send_eof(self) -> None:
        with self._send_conflict:
            await self._checkpoint_if_cancelled()
            if self._closed:
                raise self._closed_error()
            pipe = self._end.outgoing
            pipe.eof = True
            pipe.wake_reader()
            await self._cancel_shielded_checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE
        elif operator.index(max_bytes) < 1:  # TypeError for 1.5, as trio's
            raise ValueError("max_bytes must be at least 1")
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            pipe = self._end.incoming
            waited = False
            while True:
                if self._closed:
                    raise self._closed_error()
                buffer = pipe.buffer
                if buffer:
                    if len(buffer) <= max_bytes:
                        data = bytes(buffer)
                        buffer.clear()
                    else:
                        data = bytes(buffer[:max_bytes])
                        del buffer[:max_bytes]
                    pipe.wake_writer()
                    break
                if pipe.eof:
                    data = b""
                    break
                waker = pipe.reader = self._new_waker()
                await waker.wait()
                waited = True
            if not waited:
                await self._cancel_shielded_checkpoint()
            return data

    async def receive_into(self, buffer: Any) -> int:
        with self._receive_conflict:
            await self._checkpoint_if_cancelled()
            pipe = self._end.incoming
            waited = False
            target = memoryview(buffer)
            if target.format != "B" or target.ndim != 1:
                target = target.cast("B")
            try:
                while True:
                    if self._closed:
                        raise self._closed_error()
                    if pipe.buffer:
                        count = min(len(target), len(pipe.buffer))
                        target[:count] = pipe.buffer[:count]
                        del pipe.buffer[:count]
                        pipe.wake_writer()
                        break
                    if pipe.eof or not len(target):
                        count = 0
                        break
                    waker = pipe.reader = self._new_waker()
                    await waker.wait()
                    waited = True
            finally:
                target.release()
            if not waited:
                await self._cancel_shielded_checkpoint()
            return count

    def _close_now(self) -> None:
        if not self._closed:
            self._closed = True
            self._end.close()

    async def aclose(self) -> None:
        self._close_now()
        await self._checkpoint()

    @property
    def local_address(self) -> URL:
        return self._end.local

    @property
    def peer_address(self) -> URL:
        return self._end.peer


class InprocListenerIO(InprocHooks):
    """accept / aclose over a listening name; the face wraps what comes out."""

    _noun = "listener"
    _listener: InprocListenerEnd
    _conflict: ConflictDetector

    def _init_listener(self, end: InprocListenerEnd, face: Face, new: NewWaker) -> None:
        self._init_inproc(end.url, face, new)
        self._listener = end
        self._conflict = ConflictDetector(
            f"{end.url}: another task is already accepting", face.busy_exception
        )

    async def _accept_end(self) -> InprocStreamEnd:
        """The next connection; call it under ``self._conflict``."""
        await self._checkpoint_if_cancelled()
        listener, waited = self._listener, False
        while True:
            if self._closed:
                raise self._closed_error()
            end = listener.try_accept()
            if end is not None:
                break
            waker = listener.waker = self._new_waker()
            await waker.wait()
            waited = True
        if not waited:
            await self._cancel_shielded_checkpoint()
        return end

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._listener.close()
        await self._checkpoint()

    def detach(self) -> list[socket.socket]:
        """Always PacketeerError (the listener stays open): an inproc name is
        no socket another server could take."""
        raise PacketeerError(
            f"{self.url}: an inproc:// listener has no socket to hand over "
            "(only socket listeners can be detached)"
        )

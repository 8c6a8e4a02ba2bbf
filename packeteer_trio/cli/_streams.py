"""Stream helpers shared by the subcommands: naming ends, copying, timing out."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio

import packeteer_trio as pt

from ._errors import UsageError


def can_send(stream: trio.abc.Stream) -> bool:
    # PipeStream knows its direction (a FIFO end is one-way); sockets are two-way.
    return bool(getattr(stream, "can_send", True))


def can_receive(stream: trio.abc.Stream) -> bool:
    return bool(getattr(stream, "can_receive", True))


def can_send_eof(stream: trio.abc.Stream) -> bool:
    """Whether *stream* can half-close.

    TLS cannot (``trio.SSLStream`` is no HalfCloseableStream, and our
    WrappedStream around it says ``can_send_eof = False``).
    """
    return isinstance(stream, trio.abc.HalfCloseableStream) and bool(
        getattr(stream, "can_send_eof", True)
    )


def peer_name(stream: pt.Stream) -> str:
    """Who is at the other end, as well as the OS says (for logs)."""
    try:
        name = str(stream.peer_address)
    except (OSError, pt.PacketeerError, NotImplementedError):
        name = str(stream.url)
    if name in ("local://", "local:"):
        name = "unnamed client"
    credentials = getattr(stream, "peer_credentials", None)
    if credentials is not None:
        try:
            pid, uid, _ = credentials()
            name += f" (pid {pid}, uid {uid})"
        except (OSError, pt.PacketeerError):
            pass  # not a local:// socket, or the OS does not say
    return name


def local_name(stream: pt.Stream) -> str:
    """Our own end's address (for ``-v``); an unnamed AF_UNIX client has none."""
    try:
        name = str(stream.local_address)
    except (OSError, pt.PacketeerError, NotImplementedError):
        return str(stream.url)
    return "unnamed" if name in ("local://", "local:") else name


async def connect_reply(url: pt.URL) -> pt.Stream:
    """Connect a stream that must be able to send (e.g. ``--reply fifo://…``)."""
    stream = await pt.connect(url)
    if not can_send(stream):
        await stream.aclose()
        raise UsageError(f"{url}: cannot send on this URL")
    return stream


async def connect_within(url: pt.URL, wait: float | None) -> pt.Stream:
    """``pt.connect(url)``, given up after *wait* seconds (``-w``) if set."""
    with trio.move_on_after(math.inf if wait is None else wait) as scope:
        return await pt.connect(url)
    assert scope.cancelled_caught
    raise trio.TooSlowError(f"{url}: connect timed out after {wait:g} s (--wait)")


async def receive_exactly(stream: trio.abc.ReceiveStream, count: int) -> bytes:
    """Exactly *count* bytes; BrokenResourceError if the stream ends before."""
    parts: list[bytes | bytearray] = []
    got = 0
    while got < count:
        data = await stream.receive_some(count - got)
        if not data:
            raise trio.BrokenResourceError(
                f"the peer closed after {got} of {count} bytes"
            )
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class Silence:
    """A cancel scope that expires once *seconds* pass without data.

    ``touch()`` on every chunk moved restarts the clock. A Silence made with
    ``started=False`` does nothing until ``start()``: that is the linger
    after one side has ended and the other cannot be told (it cannot
    half-close, so its peer may wait for an end of file that never comes);
    one started at once is ``-w``'s idle timeout. *seconds* None never
    expires.
    """

    def __init__(self, seconds: float | None, *, started: bool = True) -> None:
        self.seconds = seconds
        self._span = math.inf if seconds is None else seconds
        self.scope = trio.CancelScope()
        self.active = False
        if started:
            self.start()

    def start(self) -> None:
        if self.seconds is not None:  # else touch() stays a no-op
            self.active = True
            self.scope.deadline = trio.current_time() + self._span

    def touch(self) -> None:
        if self.active:
            self.scope.deadline = trio.current_time() + self._span

    def check(self, what: str) -> None:
        """Raise TooSlowError naming *what* if the scope has expired."""
        if self.scope.cancelled_caught:
            raise trio.TooSlowError(f"{what}: no data for {self._span:g} s (--wait)")


async def copy(
    receive: Callable[[], Awaitable[bytes | bytearray]],
    send: Callable[[bytes | bytearray], Awaitable[None]],
    finish: Callable[[], Awaitable[None]],
) -> int:
    """Move chunks from *receive* to *send* until end of file, then *finish*
    (which passes the end of file on: ``send_eof``). Returns the byte count."""
    total = 0
    while data := await receive():
        total += len(data)
        await send(data)
    await finish()
    return total

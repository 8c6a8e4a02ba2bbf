"""Stream helpers shared by the subcommands: naming peers, copying, half-closing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from .. import Stream, connect
from .._errors import PacketeerError
from .._url import URL
from ._common import UsageError, can_send


def peer_name(stream: Stream) -> str:
    """Who is at the other end, as well as the OS says (for logs)."""
    try:
        name = str(stream.peer_address)
    except (OSError, PacketeerError, NotImplementedError):
        name = str(stream.url)
    if name in ("local://", "local:"):
        name = f"{stream.url} (unnamed client)"
    credentials = getattr(stream, "peer_credentials", None)
    if credentials is not None:
        try:
            pid, uid, _ = credentials()
            name += f" (pid {pid}, uid {uid})"
        except (OSError, PacketeerError):
            pass  # not a local:// socket, or the OS does not say
    return name


async def connect_reply(url: URL) -> Stream:
    """Connect a stream that must be able to send (e.g. ``--reply fifo://…``)."""
    stream = await connect(url)
    if not can_send(stream):
        await stream.aclose()
        raise UsageError(f"{url}: cannot send on this URL")
    return stream


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


def can_send_eof(stream: trio.abc.Stream) -> bool:
    """Whether *stream* can half-close.

    TLS cannot (``trio.SSLStream`` is no HalfCloseableStream, and our
    WrappedStream around it says ``can_send_eof = False``).
    """
    return isinstance(stream, trio.abc.HalfCloseableStream) and bool(
        getattr(stream, "can_send_eof", True)
    )


class Linger:
    """Ends a connection that can no longer finish by itself.

    When one side has ended and the other cannot be told (it cannot
    half-close), the peer may wait for an end of file that never comes (an
    echo server does). ``start()`` gives the rest *seconds*: ``scope``
    expires once that long passes without data (``touch()`` on every chunk
    received the other way restarts the clock).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.scope = trio.CancelScope()
        self.active = False

    def start(self) -> None:
        self.active = True
        self.scope.deadline = trio.current_time() + self.seconds

    def touch(self) -> None:
        if self.active:
            self.scope.deadline = trio.current_time() + self.seconds


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

"""The trio face's adapters: a user scheme's trio objects as packeteer's.

A scheme added with ``register_scheme`` builds finished trio objects (a
:class:`trio.abc.Stream`, a :class:`trio.abc.Listener`, a
:class:`trio.abc.Channel`); the verbs are typed to return packeteer's
classes, so what a factory returns is shown through these adapters, which
hold the user's object as ``wrapped`` and implement the abstract bases of
:mod:`._abc` (never a concrete class). A factory that returns packeteer's
own objects is passed through untouched.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, final

import trio
from trio.lowlevel import checkpoint

from .._buffer import Buffer
from .._errors import PacketeerError
from .._sendfile import copy_file
from .._url import URL
from ._abc import DatagramChannel, DatagramSocket, Listener, Stream

Data = bytes | bytearray | memoryview


# -- what the trio face makes of a user scheme's objects ------------------------


def adapt_stream(stream: trio.abc.Stream, url: URL) -> Stream:
    """A user scheme's stream as a packeteer Stream (one already is one)."""
    if isinstance(stream, Stream):
        return stream
    return WrappedStream(stream, _own_url(stream, url))


def adapt_listener(listener: trio.abc.Listener[trio.abc.Stream], url: URL) -> Listener:
    """A user scheme's listener as a packeteer Listener."""
    if isinstance(listener, Listener):
        return listener
    return WrappedListener(listener, _listener_url(listener, url))


def adapt_datagram_socket(
    channel: trio.abc.Channel[tuple[bytes, URL]], url: URL
) -> DatagramSocket:
    """A user scheme's channel of ``(data, address)`` as a DatagramSocket."""
    if isinstance(channel, DatagramSocket):
        return channel
    return WrappedDatagramSocket(channel, _own_url(channel, url))


def adapt_datagram_channel(
    channel: trio.abc.Channel[bytes], url: URL
) -> DatagramChannel:
    """A user scheme's channel of ``bytes`` as a DatagramChannel."""
    if isinstance(channel, DatagramChannel):
        return channel
    return WrappedDatagramChannel(channel, _own_url(channel, url))


def _own_url(result: object, url: URL) -> URL:
    """The result's own ``url`` if it has one, else the URL it was opened with."""
    found = getattr(result, "url", None)
    return found if isinstance(found, URL) else url


def _listener_url(listener: object, url: URL) -> URL:
    """What clients connect to: the URL asked for, with the real port filled in.

    The port (and the host, if none was asked for) comes from the packeteer
    Listener underneath (found through ``transport_listener``), so that
    ``tls+tcp://localhost:0`` becomes ``tls+tcp://localhost:40123`` and
    ``connect(listener.url)`` reaches it, keeping the host name a
    certificate is checked against.
    """
    found = getattr(listener, "url", None)
    if isinstance(found, URL):
        return found
    transport = _transport_listener(listener)
    if transport is None or transport.url.port is None:
        return url
    return url.replace(host=url.host or transport.url.host, port=transport.url.port)


def _layers(obj: object, attribute: str) -> Iterator[object]:
    """The objects under *obj*, following *attribute* (``transport_stream``)."""
    for _ in range(32):  # layers, never a cycle; 32 is plenty
        obj = getattr(obj, attribute, None)
        if obj is None:
            return
        yield obj


def _transport_stream(stream: object) -> Stream | None:
    """The packeteer Stream under a layered stream (trio.SSLStream), if any."""
    for layer in _layers(stream, "transport_stream"):
        if isinstance(layer, Stream):
            return layer
    return None


def _transport_listener(listener: object) -> Listener | None:
    """The packeteer Listener under a layered listener (trio.SSLListener)."""
    for layer in _layers(listener, "transport_listener"):
        if isinstance(layer, Listener):
            return layer
    return None


def _no_descriptor(what: object, url: URL) -> PacketeerError:
    return PacketeerError(
        f"{url}: this {type(what).__name__} has no descriptor of its own "
        "(its scheme's object has no packeteer transport underneath)"
    )


def _not_watchable(what: object, url: URL) -> PacketeerError:
    # A layered stream buffers (TLS holds decrypted bytes the descriptor no
    # longer shows), so descriptor readiness would be a lie.
    return PacketeerError(
        f"{url}: the scheduler watches descriptors, and a {type(what).__name__} "
        "from a user scheme may hold data in its own buffers; use trio tasks "
        "(or register its transport) instead"
    )


# -- adapters -----------------------------------------------------------------


@final
class WrappedStream(Stream):
    """A user scheme's :class:`trio.abc.Stream`, seen as a packeteer Stream.

    ``wrapped`` is the factory's object (a :class:`trio.SSLStream` for
    ``tls+tcp://``); ``transport`` the packeteer Stream under it, found by
    following ``transport_stream`` attributes (as trio's SSLStream has), or
    None. Addresses and ``fileno()`` come from the transport; without one the
    addresses are ``url`` and ``fileno()`` raises PacketeerError.

    ``send_eof`` half-closes when the wrapped stream can
    (:attr:`can_send_eof`); otherwise, as with TLS, it raises
    PacketeerError: close the stream instead.
    """

    def __init__(self, wrapped: trio.abc.Stream, url: URL) -> None:
        self.url = url
        self.wrapped = wrapped
        self.transport: Stream | None = _transport_stream(wrapped)
        self._closed = False

    @property
    def can_send_eof(self) -> bool:
        """Whether the wrapped stream can half-close."""
        return isinstance(self.wrapped, trio.abc.HalfCloseableStream)

    async def send_all(self, data: Data) -> None:
        await self.wrapped.send_all(data)

    async def send_file(
        self, file: BinaryIO, offset: int = 0, count: int | None = None
    ) -> int:
        """The read + ``send_all`` loop (a user scheme's stream, TLS, has no
        descriptor of its own to send to): cancelled, it leaves the stream
        as a cancelled ``send_all`` does."""
        return await copy_file(
            self.wrapped.send_all, checkpoint, file, offset, count, self.url
        )

    async def wait_send_all_might_not_block(self) -> None:
        await self.wrapped.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self.wrapped, trio.abc.HalfCloseableStream):
            await self.wrapped.send_eof()
            return
        await checkpoint()
        raise PacketeerError(
            f"{self.url}: a {type(self.wrapped).__name__} cannot half-close "
            "(send_eof); close the stream when done instead"
        )

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.wrapped.receive_some(max_bytes)
        return data if type(data) is bytes else bytes(data)

    async def receive_into(self, buffer: Buffer) -> int:
        with memoryview(buffer) as view, view.cast("B") as target:
            data = await self.wrapped.receive_some(len(target))
            target[: len(data)] = data
        return len(data)

    async def aclose(self) -> None:
        self._closed = True
        await self.wrapped.aclose()

    def fileno(self) -> int:
        if self.transport is None:
            raise _no_descriptor(self, self.url)
        return self.transport.fileno()

    @property
    def local_address(self) -> URL:
        return self.url if self.transport is None else self.transport.local_address

    @property
    def peer_address(self) -> URL:
        return self.url if self.transport is None else self.transport.peer_address

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        raise _not_watchable(self, self.url)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<WrappedStream {self.url} {type(self.wrapped).__name__}{state}>"


@final
class WrappedListener(Listener):
    """A user scheme's :class:`trio.abc.Listener`, seen as a packeteer Listener.

    ``accept`` wraps each stream in :class:`WrappedStream`; ``url`` is the
    URL listened on, with the real port filled in from ``transport`` (the
    packeteer Listener under ``transport_listener`` attributes, as trio's
    SSLListener has), so ``connect(listener.url)`` reaches it.
    """

    def __init__(self, wrapped: trio.abc.Listener[trio.abc.Stream], url: URL) -> None:
        self.wrapped = wrapped
        self.url = url
        self.transport: Listener | None = _transport_listener(wrapped)
        self._closed = False

    @property
    def sockets(self) -> list[Any]:
        """The transport's listening sockets (empty without one)."""
        return [] if self.transport is None else self.transport.sockets

    async def accept(self) -> Stream:
        stream = await self.wrapped.accept()
        if isinstance(stream, Stream):
            return stream
        return WrappedStream(stream, self.url)

    async def aclose(self) -> None:
        self._closed = True
        await self.wrapped.aclose()

    def fileno(self) -> int:
        if self.transport is None:
            raise _no_descriptor(self, self.url)
        return self.transport.fileno()

    def detach(self) -> list[socket.socket]:
        # The transport's sockets alone would drop what the scheme adds (TLS).
        raise PacketeerError(
            f"{self.url}: a user scheme's listener ({type(self.wrapped).__name__}) "
            "has no socket of its own to hand over"
        )

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        # A pending connection on the transport is what accept() waits for.
        if self.transport is None:
            raise _not_watchable(self, self.url)
        return self.transport._scheduler_fds()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<WrappedListener {self.url} {type(self.wrapped).__name__}{state}>"


def _check_size(max_size: int | None) -> int | None:
    if max_size is not None and max_size < 0:
        raise ValueError("max_size must be >= 0")
    return max_size


def _too_big(url: URL, size: int, limit: int, sender: object) -> OSError:
    # As for sockets: a datagram that does not fit is an error, never cut.
    return OSError(
        errno.EMSGSIZE,
        f"{url}: receive failed: a {size}-byte datagram from {sender} did not "
        f"fit max_size={limit} and was dropped; receive with a larger max_size",
    )


class _WrappedDatagram:
    """What both datagram adapters share: no socket, close the wrapped channel."""

    url: URL
    wrapped: trio.abc.AsyncResource
    _closed: bool

    @property
    def socket(self) -> Any:
        raise _no_descriptor(self, self.url)

    def fileno(self) -> int:
        raise _no_descriptor(self, self.url)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        raise _no_descriptor(self, self.url)

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        raise _no_descriptor(self, self.url)

    def _scheduler_fds(self) -> tuple[int | None, int | None]:
        raise _not_watchable(self, self.url)

    async def aclose(self) -> None:
        self._closed = True
        await self.wrapped.aclose()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (
            f"<{type(self).__name__} {self.url} {type(self.wrapped).__name__}{state}>"
        )


@final
class WrappedDatagramSocket(_WrappedDatagram, DatagramSocket):
    """A user scheme's channel of ``(data, address)``, seen as a DatagramSocket.

    ``send_many`` and ``receive_many`` are loops over the channel here (one
    checkpoint per datagram, and ``receive_many`` returns one datagram).
    """

    wrapped: trio.abc.Channel[tuple[bytes, URL]]

    def __init__(self, wrapped: trio.abc.Channel[tuple[bytes, URL]], url: URL) -> None:
        self.wrapped = wrapped
        self.url = url
        self._closed = False

    async def send_to(self, data: Data, address: str | URL) -> None:
        await self.wrapped.send((bytes(data), URL.parse(address)))

    async def send_many(self, items: Iterable[tuple[Data, str | URL]]) -> None:
        for data, address in items:
            await self.send_to(data, address)

    async def receive_from(self, max_size: int | None = None) -> tuple[bytes, URL]:
        limit = _check_size(max_size)
        data, sender = await self.wrapped.receive()
        if limit is not None and len(data) > limit:
            raise _too_big(self.url, len(data), limit, sender)
        return data, sender

    async def receive_many(
        self, max_count: int = 64, *, max_size: int | None = None
    ) -> list[tuple[bytes, URL]]:
        if max_count < 1:
            raise ValueError("max_count must be >= 1")
        return [await self.receive_from(max_size)]


@final
class WrappedDatagramChannel(_WrappedDatagram, DatagramChannel):
    """A user scheme's channel of ``bytes``, seen as a DatagramChannel."""

    wrapped: trio.abc.Channel[bytes]

    def __init__(self, wrapped: trio.abc.Channel[bytes], url: URL) -> None:
        self.wrapped = wrapped
        self.url = url
        self._closed = False

    async def send(self, value: Data) -> None:
        await self.wrapped.send(bytes(value))

    async def receive(self, *, max_size: int | None = None) -> bytes:
        limit = _check_size(max_size)
        data = await self.wrapped.receive()
        if limit is not None and len(data) > limit:
            raise _too_big(self.url, len(data), limit, self.url)
        return data

    @property
    def local_address(self) -> URL:
        return self.url

    @property
    def peer_address(self) -> URL:
        return self.url

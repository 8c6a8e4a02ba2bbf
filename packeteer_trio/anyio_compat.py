"""packeteer_trio for anyio apps: the same URLs, returning ``anyio.abc`` objects.

Works under anyio's asyncio backend (with or without uvloop) and its trio
backend::

    from packeteer_trio import anyio_compat as pa

    async with await pa.connect("tcp://localhost:8080") as stream:
        await stream.send(b"hello")
        print(await stream.receive())

- :func:`connect` returns a :class:`Stream`, an :class:`anyio.abc.ByteStream`
  with its ``url``; for sockets also an :class:`anyio.abc.SocketStream`
  (:class:`anyio.abc.UNIXSocketStream` for ``local://`` paths and abstract
  names), for pipes (``anon://``, ``fifo://``, the unnamed ``local://``)
  only that; ``local://…?behaviour=seqpacket`` gives a
  :class:`SeqpacketStream`, an :class:`anyio.abc.ObjectStream` of whole
  records (and a :class:`Stream`);
- :func:`listen` returns an :class:`anyio.abc.Listener`, :func:`serve` runs
  one;
- :func:`open_datagram` returns a :class:`DatagramSocket`, an
  :class:`anyio.abc.UnreliableObjectStream` of ``(bytes, URL)`` items;
  :func:`connect_datagram` a :class:`DatagramChannel`, one of ``bytes``
  (a :class:`PacketChannel` of packets for ``tun://`` and ``tap://``);
- everything has a ``url`` and the typed attribute
  :attr:`PacketeerAttribute.url`, and where a socket is behind it,
  :class:`anyio.abc.SocketAttribute`'s attributes;
- :class:`URLConnectable` hands a URL to anyio code that takes a
  :class:`anyio.abc.ByteStreamConnectable`.

anyio's semantics apply: ``receive()`` raises :exc:`anyio.EndOfStream` at end
of file, and use errors are anyio's ``BrokenResourceError``,
``ClosedResourceError`` and ``BusyResourceError``. Connecting and listening
fail with the standard ``OSError`` subclasses naming the URL; bad URLs with
:exc:`~packeteer_trio.InvalidURL`, before anything is opened.

URL parsing, the scheme registry, the open pipeline and the scheme modules
(which create, bind and connect) are shared with the trio face; only waiting
and exceptions differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, final, overload

import anyio
import anyio.abc
import anyio.lowlevel

import packeteer_trio._open as _open

from ._anyio._abc import DatagramChannel, DatagramSocket, Listener, Stream
from ._anyio._backend import PacketeerAttribute
from ._anyio._datagram import OSDatagramChannel, OSDatagramSocket, PacketChannel
from ._anyio._inproc import (
    InprocDatagramChannel,
    InprocDatagramSocket,
    InprocListener,
    InprocStream,
)
from ._anyio._listener import OSListener
from ._anyio._seqpacket import SeqpacketStream
from ._anyio._stream import wrap_stream
from ._endpoints import PacketEndpoint
from ._inproc import InprocDatagramEnd, InprocListenerEnd, InprocStreamEnd
from ._url import URL

__all__ = [
    "DatagramChannel",
    "DatagramSocket",
    "InprocDatagramChannel",
    "InprocDatagramSocket",
    "InprocListener",
    "InprocStream",
    "Listener",
    "OSDatagramChannel",
    "OSDatagramSocket",
    "PacketChannel",
    "PacketeerAttribute",
    "SeqpacketStream",
    "Stream",
    "URLConnectable",
    "connect",
    "connect_datagram",
    "listen",
    "open_datagram",
    "serve",
]


async def connect(url: str | URL) -> Stream:
    """Open a byte stream to *url* (``tcp://host:port``, ``local:///path``, …).

    A :class:`Stream`; sockets are also :class:`anyio.abc.SocketStream`
    (AF_UNIX ones :class:`anyio.abc.UNIXSocketStream`): narrow with
    ``isinstance`` for their extra methods.
    """
    target = _open.builtin_target(url, "connect")
    # Some schemes never wait (anon, fifo, local): make every verb a checkpoint.
    await anyio.lowlevel.checkpoint()
    endpoint = await target.connect()
    if isinstance(endpoint, InprocStreamEnd):
        return InprocStream(endpoint)
    return await wrap_stream(endpoint)


async def listen(url: str | URL, *, backlog: int | None = None) -> Listener:
    """Listen on *url*; the listener's ``url`` is the bound address.

    *backlog* None asks for the most the OS allows; larger than 65535 is
    capped there, as trio does.
    """
    target = _open.builtin_target(url, "listen")
    await anyio.lowlevel.checkpoint()
    endpoint = await target.listen(backlog)
    if isinstance(endpoint, InprocListenerEnd):
        return InprocListener(endpoint)
    try:
        return OSListener(endpoint)
    except BaseException:
        endpoint.close()
        raise


async def serve(
    url: str | URL,
    handler: Callable[[Stream], Any],
    *,
    backlog: int | None = None,
    task_group: anyio.abc.TaskGroup | None = None,
    task_status: anyio.abc.TaskStatus[list[Listener]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on *url* and run ``handler(stream)`` for every connection.

    Runs until cancelled; a handler's exception propagates and ends the
    server. Handlers run in *task_group* if given. Use it with
    ``await task_group.start(serve, url, handler)`` to get the list of
    listeners (as the trio face's ``serve`` does) once it is listening.
    """
    listener = await listen(url, backlog=backlog)
    async with listener:
        task_status.started([listener])
        await listener.serve(handler, task_group)


async def open_datagram(url: str | URL) -> DatagramSocket:
    """Bind a datagram socket at *url* (port 0 = ephemeral; see ``sock.url``).

    An :class:`anyio.abc.UnreliableObjectStream` of ``(bytes, URL)``:
    ``data, sender = await sock.receive()``, ``await sock.send((data, sender))``.
    """
    target = _open.builtin_target(url, "open_datagram")
    await anyio.lowlevel.checkpoint()
    endpoint = await target.open_datagram()
    if isinstance(endpoint, InprocDatagramEnd):
        return InprocDatagramSocket(endpoint)
    try:
        return OSDatagramSocket(endpoint)
    except BaseException:
        endpoint.close()
        raise


@overload
async def connect_datagram(url: str | URL, *, local: str | URL) -> DatagramChannel: ...
@overload
async def connect_datagram(
    url: str | URL, *, local: None = None
) -> DatagramChannel | PacketChannel: ...


async def connect_datagram(
    url: str | URL, *, local: str | URL | None = None
) -> DatagramChannel | PacketChannel:
    """A connected datagram socket to *url*; *local* binds our end first.

    An :class:`anyio.abc.UnreliableObjectStream` of ``bytes``, one datagram
    per item. For ``local://`` peers to reply, our end needs an address:
    give *local* (a path or abstract name); on Linux an abstract one is
    picked otherwise. A packet device (``tun://``, ``tap://``) gives a
    :class:`PacketChannel`, one packet per item (and has no *local* address:
    given one, the type says :class:`DatagramChannel`).
    """
    target = _open.builtin_target(url, "connect_datagram", local=local)
    # The checkpoint comes first: once the socket or device exists, nothing
    # may cancel us before the channel owns it.
    await anyio.lowlevel.checkpoint()
    endpoint = await target.connect_datagram()
    if isinstance(endpoint, InprocDatagramEnd):
        return InprocDatagramChannel(endpoint)
    try:
        if isinstance(endpoint, PacketEndpoint):
            return PacketChannel(endpoint)
        return OSDatagramChannel(endpoint)
    except BaseException:
        endpoint.close()
        raise


@final
class URLConnectable(anyio.abc.ByteStreamConnectable):
    """Connects to a URL: hand it to anyio code that takes a connectable.

    The URL is checked when the connectable is made
    (:exc:`~packeteer_trio.InvalidURL`); :meth:`connect` raises
    :exc:`anyio.ConnectionFailed` as anyio's connectables do, chained from
    (and with the errno and message of) the ``OSError`` that names the URL.
    """

    def __init__(self, url: str | URL) -> None:
        self._url = _open.builtin_target(url, "connect").url

    @property
    def url(self) -> URL:
        """Where :meth:`connect` connects to."""
        return self._url

    async def connect(self) -> Stream:
        """Open a new stream to the URL."""
        try:
            return await connect(self._url)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno is None:
                raise anyio.ConnectionFailed(reason) from exc
            raise anyio.ConnectionFailed(exc.errno, reason) from exc

    def __eq__(self, other: object) -> bool:
        if isinstance(other, URLConnectable):
            return self._url == other._url
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._url)

    def __repr__(self) -> str:
        return f"URLConnectable({str(self._url)!r})"

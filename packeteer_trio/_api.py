"""The trio verbs: connect, listen, serve, open_datagram, connect_datagram.

Each one is the open pipeline (:mod:`._open`: parse, one lookup, the verb
check, then the scheme's factory) inside trio's checkpoint sandwich, and a
wrap (:mod:`._trio._opened`): a raw endpoint becomes one of the trio face's
classes, a user scheme's trio object is adapted. Some schemes never wait (anon,
fifo, an unnamed pair, binding a literal address): ``checkpoint_if_cancelled``
before and ``cancel_shielded_checkpoint`` after keep every verb a checkpoint
without letting a cancellation lose the new descriptors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, overload

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

import packeteer_trio._open as _open

from ._accept import (
    ACCEPT_CAPACITY_ERRNOS,
    ACCEPT_RETRY_PAUSE,
    IGNORABLE_ACCEPT_ERRNOS,
    AcceptBurst,
)
from ._trio import _opened
from ._trio._abc import DatagramChannel, DatagramSocket, Listener, Stream
from ._trio._packet import PacketChannel
from ._url import URL

Handler = Callable[[Stream], Awaitable[Any]]


async def connect(url: str | URL) -> Stream:
    """Open a byte stream to *url* (``tcp://host:port``, ``local:///path``, …).

    A scheme added with :func:`register_scheme` gives its factory's stream,
    wrapped in a :class:`WrappedStream` unless it is a packeteer Stream.
    """
    target = _open.target(url, "connect")
    await checkpoint_if_cancelled()
    stream = _opened.stream(await target.connect(), target.url)
    await cancel_shielded_checkpoint()
    return stream


async def listen(url: str | URL, *, backlog: int | None = None) -> Listener:
    """Listen on *url*; the listener's ``url`` is the bound address.

    *backlog* None asks for the most the OS allows; larger than 65535 is
    capped there, as trio does.
    """
    target = _open.target(url, "listen")
    await checkpoint_if_cancelled()
    listener = _opened.listener(await target.listen(backlog), target.url)
    await cancel_shielded_checkpoint()
    return listener


async def open_datagram(url: str | URL) -> DatagramSocket:
    """Bind a datagram socket at *url* (port 0 = ephemeral; see ``sock.url``)."""
    target = _open.target(url, "open_datagram")
    await checkpoint_if_cancelled()
    sock = _opened.datagram_socket(await target.open_datagram(), target.url)
    await cancel_shielded_checkpoint()
    return sock


@overload
async def connect_datagram(url: str | URL, *, local: str | URL) -> DatagramChannel: ...
@overload
async def connect_datagram(
    url: str | URL, *, local: None = None
) -> DatagramChannel | PacketChannel: ...


async def connect_datagram(
    url: str | URL, *, local: str | URL | None = None
) -> DatagramChannel | PacketChannel:
    """A channel of datagrams to *url*; *local* binds our end first.

    For ``local://`` peers to reply, our end needs an address: give *local*
    (a path or abstract name); on Linux an abstract one is picked otherwise.
    A packet device (``tun://``, ``tap://``) gives a :class:`PacketChannel`
    (and has no *local* address: given one, the type says
    :class:`DatagramChannel`); narrow with ``isinstance`` otherwise.
    """
    target = _open.target(url, "connect_datagram", local=local)
    await checkpoint_if_cancelled()
    channel = _opened.datagram_channel(await target.connect_datagram(), target.url)
    await cancel_shielded_checkpoint()
    return channel


async def serve(
    url: str | URL,
    handler: Callable[[Stream], Awaitable[Any]],
    *,
    backlog: int | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[Listener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on *url* and run ``handler(stream)`` for every connection.

    Like :func:`trio.serve_tcp`, for every stream scheme: runs until
    cancelled, a handler's exception propagates (cancelling the server),
    ``task_status`` is started with the list of listeners, a stream the
    handler leaves open is closed for it, and the listener is closed on exit.
    An accept error that concerns only the connection being accepted (the
    errnos trio's ``SocketListener`` ignores: ECONNABORTED, EPROTO, ENETDOWN,
    ECONNRESET, …) drops that connection and accepts the next, from any
    listener. Running out of descriptors or kernel memory (EMFILE, ENFILE,
    ENOMEM, ENOBUFS) pauses accepting for 100 ms at a time until it works
    again; the logger ``packeteer_trio`` reports that once per burst (ERROR,
    with the exception) and the recovery once (INFO), not every retry.
    """
    listener = await listen(url, backlog=backlog)
    await serve_listeners(
        handler,
        [listener],
        handler_nursery=handler_nursery,
        task_status=task_status,
    )


async def serve_listeners(
    handler: Handler,
    listeners: list[Listener],
    *,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[Listener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`trio.serve_listeners` for our listeners, logging once per burst.

    Takes ownership of *listeners*: each accept loop closes its listener when
    it ends, however it ends (a task always starts, even when cancelled).
    """
    burst = AcceptBurst()
    async with trio.open_nursery() as nursery:
        if handler_nursery is None:
            handler_nursery = nursery
        for listener in listeners:
            nursery.start_soon(
                _serve_one_listener, listener, handler_nursery, handler, burst
            )
        # The listeners already queue connections; like trio, report them
        # once every accept loop is started.
        task_status.started(listeners)


async def _run_handler(stream: Stream, handler: Handler) -> None:
    try:
        await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)


async def _serve_one_listener(
    listener: Listener,
    handler_nursery: trio.Nursery,
    handler: Handler,
    burst: AcceptBurst,
) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno in IGNORABLE_ACCEPT_ERRNOS:
                    # Only that connection failed (a user scheme's listener
                    # may pass it on): drop it, as trio's listeners do. The
                    # checkpoint keeps a listener failing at once from
                    # spinning.
                    await trio.lowlevel.checkpoint()
                    continue
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                burst.failed(listener.url, exc)
                await trio.sleep(ACCEPT_RETRY_PAUSE)
                continue
            burst.succeeded(listener.url)
            handler_nursery.start_soon(_run_handler, stream, handler)

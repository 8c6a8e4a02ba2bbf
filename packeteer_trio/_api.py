"""The trio verbs: connect, listen, serve. URL → registry → scheme → stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._endpoints import (
    ACCEPT_CAPACITY_ERRNOS,
    ACCEPT_RETRY_PAUSE,
    IGNORABLE_ACCEPT_ERRNOS,
    AcceptBurst,
    capped_backlog,
)
from ._errors import InvalidURL
from ._extend import connect_user, listen_user
from ._registry import Scheme, lookup
from ._stream import Listener, Stream, wrap_stream
from ._url import URL

Handler = Callable[[Stream], Awaitable[Any]]


def stream_scheme(url: URL, verb: str) -> Scheme:
    """The URL's scheme, if it has stream behaviour; else a pointed InvalidURL."""
    scheme = lookup(url.scheme, str(url))
    if url.behaviour == "datagram" or "stream" not in scheme.behaviours:
        raise InvalidURL(
            f"{url}: a datagram URL cannot {verb}(); use open_datagram() or "
            "connect_datagram()"
        )
    return scheme


async def connect(url: str | URL) -> Stream:
    """Open a byte stream to *url* (``tcp://host:port``, ``local:///path``, …).

    A scheme added with :func:`register_scheme` gives its factory's stream,
    wrapped in a :class:`WrappedStream` unless it is a packeteer Stream.
    """
    url = URL.parse(url)
    scheme = stream_scheme(url, "connect")
    if scheme.factory is not None:  # a scheme from register_scheme()
        return await connect_user(scheme.factory, url)
    if scheme.connect is None:
        raise scheme.missing("connect", url)
    # Some schemes never wait (anon, fifo, an unnamed pair): the checkpoint
    # pair keeps every connect() a checkpoint without risking the new fds.
    await trio.lowlevel.checkpoint_if_cancelled()
    stream = wrap_stream(await scheme.connect(url))
    await trio.lowlevel.cancel_shielded_checkpoint()
    return stream


async def listen(url: str | URL, *, backlog: int | None = None) -> Listener:
    """Listen on *url*; the listener's ``url`` is the bound address.

    *backlog* None asks for the most the OS allows; larger than 65535 is
    capped there, as trio does.
    """
    url = URL.parse(url)
    backlog = capped_backlog(backlog)
    scheme = stream_scheme(url, "listen")
    if scheme.factory is not None:  # a scheme from register_scheme()
        return await listen_user(scheme.factory, url, backlog)
    if scheme.listen is None:
        raise scheme.missing("listen", url)
    await trio.lowlevel.checkpoint_if_cancelled()
    listener = Listener(await scheme.listen(url, backlog))
    await trio.lowlevel.cancel_shielded_checkpoint()
    return listener


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

"""The trio verbs: connect, listen, serve. URL → registry → scheme → stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._errors import InvalidURL
from ._extend import connect_user, listen_user
from ._registry import Scheme, lookup
from ._stream import Listener, Stream, wrap_stream
from ._url import URL


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
        raise InvalidURL(f"{url}: {url.scheme}:// cannot connect; use listen()")
    # Some schemes never wait (anon, fifo, an unnamed pair): the checkpoint
    # pair keeps every connect() a checkpoint without risking the new fds.
    await trio.lowlevel.checkpoint_if_cancelled()
    stream = wrap_stream(await scheme.connect(url))
    await trio.lowlevel.cancel_shielded_checkpoint()
    return stream


async def listen(url: str | URL, *, backlog: int | None = None) -> Listener:
    """Listen on *url*; the listener's ``url`` is the bound address."""
    url = URL.parse(url)
    scheme = stream_scheme(url, "listen")
    if scheme.factory is not None:  # a scheme from register_scheme()
        return await listen_user(scheme.factory, url, backlog)
    if scheme.listen is None:
        raise InvalidURL(
            f"{url}: {url.scheme}:// has nothing to listen on; use connect({url})"
        )
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
    EMFILE and similar keep serving after a pause, and ``task_status`` is
    started with the list of listeners.
    """
    listener = await listen(url, backlog=backlog)
    await trio.serve_listeners(
        handler,
        [listener],
        handler_nursery=handler_nursery,
        task_status=task_status,
    )

"""inproc:// — in-process connectors: no descriptors, no kernel.

``inproc://NAME`` is a name in the running event loop (one trio run, one
asyncio loop), like nng's and zmq's inproc transport: ``listen`` takes the
name, ``connect`` reaches it, bytes move through memory
(:mod:`.._inproc`). Names are case-insensitive (they are URL hosts).
``?behaviour=datagram`` names a datagram end instead; the two kinds of name
are apart, as TCP and UDP ports are. Unnamed ends (a connecting stream, a
``connect_datagram`` without ``local=``) get ``inproc://~N``; names starting
with ``~`` are kept for them.
"""

from __future__ import annotations

import asyncio
import errno
import weakref

import anyio
import trio

from .._accept import MAX_BACKLOG
from .._errors import InvalidURL
from .._inproc import (
    AUTO_PREFIX,
    DATAGRAM_QUERY,
    InprocDatagramEnd,
    InprocListenerEnd,
    InprocStreamEnd,
    Mailbox,
    Namespace,
    stream_pair,
)
from .._registry import Scheme, register
from .._url import URL

_TRIO_NAMES: trio.lowlevel.RunVar[Namespace] = trio.lowlevel.RunVar("inproc")
_ASYNCIO_NAMES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Namespace] = (
    weakref.WeakKeyDictionary()
)


def validate(url: URL, text: str) -> URL:
    if not url.host:
        raise InvalidURL(f"{text!r}: inproc:// needs a name: inproc://NAME")
    if url.port is not None or url.path not in ("", "/"):
        raise InvalidURL(
            f"{text!r}: inproc://NAME takes a name only (no port, no path)"
        )
    return url.replace(path="") if url.path else url


def names() -> Namespace:
    """The names of the running event loop (a trio run or an asyncio loop)."""
    if trio.lowlevel.in_trio_task():
        try:
            return _TRIO_NAMES.get()
        except LookupError:
            namespace = Namespace()
            _TRIO_NAMES.set(namespace)
            return namespace
    loop = asyncio.get_running_loop()
    found = _ASYNCIO_NAMES.get(loop)
    if found is None:
        found = _ASYNCIO_NAMES[loop] = Namespace()
    return found


def _own_name(url: URL, verb: str) -> str:
    name = url.host
    if name.startswith(AUTO_PREFIX):
        raise InvalidURL(
            f"{url}: names starting with {AUTO_PREFIX!r} are picked for unnamed "
            f"ends; {verb} under another name"
        )
    return name


def _in_use(url: URL, action: str) -> OSError:
    return OSError(
        errno.EADDRINUSE,
        f"{url}: {action} failed: the name is in use in this event loop",
    )


def _refused(url: URL, what: str) -> ConnectionRefusedError:
    return ConnectionRefusedError(
        errno.ECONNREFUSED,
        f"{url}: connect failed: no {what} has this name in this event loop",
    )


def _stream_url(name: str) -> URL:
    return URL(scheme="inproc", host=name)


async def listen(url: URL, backlog: int | None) -> InprocListenerEnd:
    name = _own_name(url, "listen")
    namespace = names()
    if name in namespace.listeners:
        raise _in_use(url, "listen")
    listener = InprocListenerEnd(
        _stream_url(name), namespace, MAX_BACKLOG if backlog is None else backlog
    )
    namespace.listeners[name] = listener
    return listener


async def connect(url: URL) -> InprocStreamEnd:
    namespace = names()
    pause = 0.001
    while True:
        listener = namespace.listeners.get(url.host)
        if listener is None:
            raise _refused(url, "listener")
        client, server = stream_pair(
            listener.url, _stream_url(namespace.auto_name()), listener.url
        )
        if listener.offer(server):
            return client
        # The backlog is full: as a local:// connect does, try again shortly
        # (a cancellation meanwhile leaves nothing behind).
        await anyio.sleep(pause)
        pause = min(pause * 2, 0.05)


def datagram_url(name: str) -> URL:
    return URL(scheme="inproc", host=name, query=DATAGRAM_QUERY)


def _mailbox(url: URL, namespace: Namespace, name: str) -> Mailbox:
    if name in namespace.mailboxes:
        raise _in_use(url, "bind")
    mailbox = namespace.mailboxes[name] = Mailbox(datagram_url(name))
    return mailbox


async def open_datagram(url: URL) -> InprocDatagramEnd:
    namespace = names()
    return InprocDatagramEnd(
        _mailbox(url, namespace, _own_name(url, "bind")), namespace
    )


async def connect_datagram(url: URL, local: URL | None) -> InprocDatagramEnd:
    namespace = names()
    if local is not None:
        if local.scheme != "inproc":
            raise InvalidURL(f"{url}: local={local} must be an inproc:// name")
        own = _own_name(local, "bind")
    else:
        own = namespace.auto_name()
    peer = namespace.mailboxes.get(url.host)
    if peer is None:
        raise _refused(url, "datagram end")
    mailbox = _mailbox(local or url, namespace, own)
    mailbox.peer = peer.url
    return InprocDatagramEnd(mailbox, namespace, peer)


SCHEME = Scheme(
    "inproc",
    validate,
    connect=connect,
    listen=listen,
    open_datagram=open_datagram,
    connect_datagram=connect_datagram,
)
register(SCHEME)

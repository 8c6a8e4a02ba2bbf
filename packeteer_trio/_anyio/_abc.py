"""The anyio face's public stream type: what ``connect`` and ``accept`` promise.

anyio's own ABCs already say what a stream can do (``SocketStream`` has the
socket attributes, ``UNIXSocketStream`` adds ``send_fds``/``receive_fds``);
this one adds what every packeteer stream has, its URL, so the verbs can
promise more than a bare :class:`anyio.abc.ByteStream`. The classes in
:mod:`._stream` derive from it and from the anyio ABC of their kind, so
``isinstance(stream, anyio.abc.UNIXSocketStream)`` narrows a
:class:`Stream` to both for a type checker.
"""

from __future__ import annotations

import anyio.abc

from .._url import URL

__all__ = ["Stream"]


class Stream(anyio.abc.ByteStream):
    """A byte stream from :func:`connect` or a :class:`Listener`, with its URL.

    Sockets are also :class:`anyio.abc.SocketStream` (AF_UNIX ones
    :class:`anyio.abc.UNIXSocketStream`); pipes are only this.
    """

    __slots__ = ()
    #: The URL it was opened with, narrowed and resolved
    #: (``tcp://localhost:80`` becomes ``tcp4://127.0.0.1:80``); also the
    #: typed attribute :attr:`PacketeerAttribute.url`.
    url: URL

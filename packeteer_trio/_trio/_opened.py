"""What the trio face makes of what the open pipeline opened (:mod:`.._open`):
a raw endpoint becomes one of the classes over OS descriptors, a user
scheme's trio object is adapted (:mod:`._wrapped`)."""

from __future__ import annotations

import trio

from .._endpoints import (
    DatagramEndpoint,
    ListenerEndpoint,
    PacketEndpoint,
    StreamEndpoint,
)
from .._inproc import InprocDatagramEnd, InprocListenerEnd, InprocStreamEnd
from .._url import URL
from ._abc import DatagramChannel, DatagramSocket, Listener, Stream
from ._datagram import OSDatagramChannel, OSDatagramSocket
from ._inproc import (
    InprocDatagramChannel,
    InprocDatagramSocket,
    InprocListener,
    InprocStream,
)
from ._listener import OSListener
from ._packet import PacketChannel
from ._stream import stream_from_endpoint
from ._wrapped import (
    adapt_datagram_channel,
    adapt_datagram_socket,
    adapt_listener,
    adapt_stream,
)


def stream(
    opened: StreamEndpoint | InprocStreamEnd | trio.abc.Stream, url: URL
) -> Stream:
    if isinstance(opened, StreamEndpoint):
        return stream_from_endpoint(opened)
    if isinstance(opened, InprocStreamEnd):
        return InprocStream(opened)
    return adapt_stream(opened, url)


def listener(
    opened: ListenerEndpoint | InprocListenerEnd | trio.abc.Listener[trio.abc.Stream],
    url: URL,
) -> Listener:
    if isinstance(opened, ListenerEndpoint):
        return OSListener(opened)
    if isinstance(opened, InprocListenerEnd):
        return InprocListener(opened)
    return adapt_listener(opened, url)


def datagram_socket(
    opened: DatagramEndpoint | InprocDatagramEnd | trio.abc.Channel[tuple[bytes, URL]],
    url: URL,
) -> DatagramSocket:
    if isinstance(opened, DatagramEndpoint):
        return OSDatagramSocket(opened)
    if isinstance(opened, InprocDatagramEnd):
        return InprocDatagramSocket(opened)
    return adapt_datagram_socket(opened, url)


def datagram_channel(
    opened: DatagramEndpoint
    | PacketEndpoint
    | InprocDatagramEnd
    | trio.abc.Channel[bytes],
    url: URL,
) -> DatagramChannel | PacketChannel:
    if isinstance(opened, DatagramEndpoint):
        return OSDatagramChannel(opened)
    if isinstance(opened, InprocDatagramEnd):
        return InprocDatagramChannel(opened)
    if isinstance(opened, PacketEndpoint):
        return PacketChannel(opened)
    return adapt_datagram_channel(opened, url)

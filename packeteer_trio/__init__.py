"""packeteer_trio: one socket-like API for every kind of inter-process I/O.

Pick the transport by URL (``tcp://``, ``udp://``, ``local://``, ``fifo://``,
``anon://``, ``pipe://``, ``tun://``, ``tap://``) and get a real trio Stream,
Listener or Channel.
"""

from ._api import connect, listen, serve
from ._datagram import DatagramChannel, DatagramSocket, connect_datagram, open_datagram
from ._errors import InvalidURL, PacketeerError, UnsupportedScheme
from ._packet import PacketChannel
from ._stream import Listener, PipeStream, SocketStream, Stream
from ._url import URL, Query

__all__ = [
    "URL",
    "DatagramChannel",
    "DatagramSocket",
    "InvalidURL",
    "Listener",
    "PacketChannel",
    "PacketeerError",
    "PipeStream",
    "Query",
    "SocketStream",
    "Stream",
    "UnsupportedScheme",
    "connect",
    "connect_datagram",
    "listen",
    "open_datagram",
    "serve",
]

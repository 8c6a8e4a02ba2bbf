"""packeteer_trio: one socket-like API for every kind of inter-process I/O.

Pick the transport by URL (``tcp://``, ``udp://``, ``local://``, ``fifo://``,
``anon://``, ``pipe://``, ``tun://``, ``tap://``, ``inproc://``) and get a
real trio Stream, Listener or Channel.
"""

import sys
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._api import connect, connect_datagram, listen, open_datagram, serve
from ._errors import (
    DescriptorsDropped,
    InvalidURL,
    PacketeerError,
    SocketActivationError,
    UnsupportedScheme,
)
from ._extend import (
    DatagramSchemeFactory,
    StreamSchemeFactory,
    register_scheme,
    unregister_scheme,
)
from ._fdpass import Credentials
from ._trio._abc import DatagramChannel, DatagramSocket, Listener, Stream
from ._trio._datagram import OSDatagramChannel, OSDatagramSocket
from ._trio._inproc import (
    InprocDatagramChannel,
    InprocDatagramSocket,
    InprocListener,
    InprocStream,
)
from ._trio._packet import PacketChannel
from ._trio._seqpacket import SeqpacketChannel
from ._trio._stream import PipeStream, SocketStream
from ._trio._wrapped import (
    WrappedDatagramChannel,
    WrappedDatagramSocket,
    WrappedListener,
    WrappedStream,
)
from ._url import URL, Query
from .scheduler import IO_EVENTS, Events, Registration, Scheduler, open_scheduler

if sys.platform == "win32":
    # Windows pipe HANDLEs (pipe://, anon://): public there, for isinstance
    # and its split(); the name does not exist elsewhere, as socket.AF_UNIX.
    from ._trio._stream_windows import HandleStream

# One source for the version: the installed distribution's metadata (set in
# pyproject.toml), which `packeteer --version` prints too.
try:
    __version__: str = _version("packeteer-trio")
except _PackageNotFoundError:  # pragma: no cover - imported from an uninstalled tree
    __version__ = "0+unknown"

__all__ = [
    "IO_EVENTS",
    "URL",
    "Credentials",
    "DatagramChannel",
    "DatagramSchemeFactory",
    "DatagramSocket",
    "DescriptorsDropped",
    "Events",
    "InprocDatagramChannel",
    "InprocDatagramSocket",
    "InprocListener",
    "InprocStream",
    "InvalidURL",
    "Listener",
    "OSDatagramChannel",
    "OSDatagramSocket",
    "PacketChannel",
    "PacketeerError",
    "PipeStream",
    "Query",
    "Registration",
    "Scheduler",
    "SeqpacketChannel",
    "SocketActivationError",
    "SocketStream",
    "Stream",
    "StreamSchemeFactory",
    "UnsupportedScheme",
    "WrappedDatagramChannel",
    "WrappedDatagramSocket",
    "WrappedListener",
    "WrappedStream",
    "connect",
    "connect_datagram",
    "listen",
    "open_datagram",
    "open_scheduler",
    "register_scheme",
    "serve",
    "unregister_scheme",
]
if sys.platform == "win32":
    __all__ += ["HandleStream"]

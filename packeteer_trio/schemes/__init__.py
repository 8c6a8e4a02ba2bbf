"""Built-in schemes: one module per transport, each registers itself.

``tls+tcp://`` is no built-in: it is the example of a scheme written against
the public API (:mod:`packeteer_trio.tls`), which sits above the core and is
imported on the first lookup of its name.
"""

from .._registry import register_lazily
from . import anon, fd, fifo, inproc, local, pipe, tcp, tuntap, udp

register_lazily("tls+tcp", "packeteer_trio.tls")

__all__ = ["anon", "fd", "fifo", "inproc", "local", "pipe", "tcp", "tuntap", "udp"]

"""Built-in schemes: one module per transport, each registers itself."""

from . import anon, fifo, local, pipe, tcp, tuntap, udp

__all__ = ["anon", "fifo", "local", "pipe", "tcp", "tuntap", "udp"]

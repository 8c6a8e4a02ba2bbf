"""Built-in schemes: one module per transport, each registers itself."""

# tls registers itself through the public register_scheme(), as a user would.
from . import anon, fd, fifo, local, pipe, tcp, tls, tuntap, udp

__all__ = ["anon", "fd", "fifo", "local", "pipe", "tcp", "tls", "tuntap", "udp"]

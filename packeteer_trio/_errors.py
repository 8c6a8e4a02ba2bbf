"""The package's exceptions, the helper that puts a URL into an OSError, and
the logger that reports what is not raised (accept bursts, dropped datagrams)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._url import URL


LOGGER = logging.getLogger("packeteer_trio")


class PacketeerError(Exception):
    """Base class of every error this package raises on its own account."""


class InvalidURL(PacketeerError, ValueError):
    """The URL cannot be used: bad syntax, unknown scheme, bad option, …"""


class UnsupportedScheme(InvalidURL):
    """A known scheme that this platform does not have (e.g. pipe:// on POSIX)."""


class SocketActivationError(PacketeerError):
    """``fd://listen/…`` found no inherited socket: not started by a service
    manager (LISTEN_FDS/LISTEN_PID missing), meant for another process
    (LISTEN_PID differs), or no descriptor has that name or index."""


def with_url(exc: OSError, url: URL | str, action: str) -> OSError:
    """Return an OSError of the same class and errno whose message names the URL.

    Callers ``raise with_url(exc, url, "connect") from exc`` so that code which
    catches ``ConnectionRefusedError`` or checks ``errno`` keeps working, while
    the message says which URL failed and what was being done to it.
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    message = f"{url}: {action} failed: {reason}"
    if exc.errno is None:
        return type(exc)(message)
    try:
        return type(exc)(exc.errno, message)
    except TypeError:  # an OSError subclass with its own constructor
        return OSError(exc.errno, message)


class DescriptorsDropped(PacketeerError):
    """A message came with descriptors the receiver did not ask for.

    More than ``maxfds`` arrived, or more than the control buffer held (the
    kernel set ``MSG_CTRUNC``), or they came with a receive that asked for
    none. Every descriptor that came with the message has been closed, so
    none leaks whether this is caught or not; the message itself is not
    lost: ``message`` holds its bytes. ``received`` is how many descriptors
    were closed; ``truncated`` is true when the kernel dropped some too.
    """

    def __init__(
        self, text: str, *, message: bytes, received: int, truncated: bool
    ) -> None:
        super().__init__(text)
        self.message = message
        self.received = received
        self.truncated = truncated

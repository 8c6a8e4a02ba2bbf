"""What every listener and ``serve()`` share about accepting: which accept
errors to skip, which to wait out, the logging of such bursts, the backlog."""

from __future__ import annotations

import errno
import os
import time

from ._errors import LOGGER
from ._url import URL

# accept() errors that concern only the one connection being accepted: like
# trio's SocketListener (its list, _highlevel_socket.py) we drop that
# connection and keep listening. Socket listeners skip them in try_accept;
# serve() (both faces) skips them from any listener, a user scheme's too.
IGNORABLE_ACCEPT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in [
        "EPERM",  # Linux: the firewall refused the connection
        "ECONNABORTED",  # BSDs: reset before we accepted
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    ]
    if hasattr(errno, name)
)


# accept() errors that mean "the system is out of something for now" (as in
# trio.serve_listeners): serving pauses and retries instead of ending.
ACCEPT_CAPACITY_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
ACCEPT_RETRY_PAUSE = 0.100

# Linux and the BSDs keep the listen backlog in 16 bits (and Python's listen()
# takes a C int): like trio, a larger one is capped here and the kernel caps
# it further to its own limit (net.core.somaxconn).
MAX_BACKLOG = 0xFFFF


def capped_backlog(backlog: int | None) -> int | None:
    """*backlog* capped at :data:`MAX_BACKLOG`; None stays "the default"."""
    if backlog is None:
        return None
    if not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int or None, not {backlog!r}")
    return min(backlog, MAX_BACKLOG)


class AcceptBurst:
    """Consecutive accept failures for lack of resources, shared by the
    listeners of one serve() (either face): the first is logged, the rest are
    counted, and the recovery is logged once."""

    __slots__ = ("failures", "started")

    def __init__(self) -> None:
        self.failures = 0
        self.started = 0.0

    def failed(self, url: URL, exc: OSError) -> None:
        if not self.failures:
            self.started = time.monotonic()
            code = exc.errno or 0
            LOGGER.error(
                "%s: accept failed with %s (%s); pausing and retrying every "
                "%d ms, logged once until accepting works again",
                url,
                errno.errorcode.get(code, code),
                os.strerror(code),
                ACCEPT_RETRY_PAUSE * 1000,
                exc_info=exc,
            )
        self.failures += 1

    def succeeded(self, url: URL) -> None:
        if self.failures:
            LOGGER.info(
                "%s: accepting again after %d failed attempts in %.1f s",
                url,
                self.failures,
                time.monotonic() - self.started,
            )
            self.failures = 0

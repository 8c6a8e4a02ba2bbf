"""The scheduler's classification: what a zero-timeout poll of the watched fds sees.

A wakeup of trio's ``wait_readable`` cannot tell data from a hang-up or an
error, and a shared wait cannot tell whether another registration's callback
took what woke it: where that matters (CLOSE or ERROR asked, a shared wait,
several directions) the I/O engine asks ``poll()``.
"""

from __future__ import annotations

import select
import sys
from collections.abc import Callable

from ._scheduler_events import CLOSE, ERROR, READ, WATCHABLE, WRITE

Key = tuple[int, bool]  # (fd, read): one of trio's waits

_POLLRDHUP = getattr(select, "POLLRDHUP", 0)


def classifier(waits: list[Key]) -> Callable[[int], int | None]:
    """``classify(woke)``: the events a zero-timeout poll of the watched fds
    sees (a wakeup cannot tell data from a hang-up), None if an fd is invalid.
    The poll object is made once per set of waits, not per wakeup."""
    if sys.platform == "win32" or not hasattr(select, "poll"):  # pragma: no cover
        return _selector(waits)
    readable, hangup = select.POLLIN | select.POLLPRI, select.POLLHUP | _POLLRDHUP
    out, err, invalid = select.POLLOUT, select.POLLERR, select.POLLNVAL
    flags: dict[int, int] = {}
    for fd, read in waits:
        flags[fd] = flags.get(fd, 0) | (readable | _POLLRDHUP if read else out)
    poller = select.poll()
    for fd, want in flags.items():
        poller.register(fd, want)
    poll = poller.poll

    def classify(woke: int) -> int | None:
        revents = 0
        for _, rev in poll(0):
            revents |= rev
        if revents & invalid:
            return None
        return (
            (READ if revents & readable else 0)
            | (WRITE if revents & out else 0)
            | (CLOSE if revents & hangup else 0)
            | (ERROR if revents & err else 0)
        )

    return classify


def _selector(waits: list[Key]) -> Callable[[int], int | None]:  # pragma: no cover
    """Windows has no poll(), but select() on its sockets (all that trio waits
    for there): READ and WRITE, never CLOSE or ERROR (a hang-up reads as the
    end of file), and still no READ for data another callback took."""
    readers = [fd for fd, read in waits if read]
    writers = [fd for fd, read in waits if not read]

    def classify(woke: int) -> int | None:
        try:
            readable, writable, _ = select.select(readers, writers, [], 0)
        except OSError:  # a socket closed under the wait
            return None
        return (READ if readable else 0) | (WRITE if writable else 0)

    return classify


def as_seen(woke: int) -> int:
    """The classification where the wakeup says it all (a connector's own
    ``_scheduler_wait``): the event bits it carries."""
    return woke & WATCHABLE

"""The scheduler's event bits: :class:`Events` and the plain-int masks used inside.

Its own module so that the scheduler, its I/O engine and the connectors that
report what they saw (``_scheduler_wait``) share one vocabulary without
importing each other.
"""

from __future__ import annotations

import enum


class Events(enum.IntFlag):
    """Event bits with packeteer's values; ``USER`` and above are user events."""

    READ = 1
    WRITE = 2
    ERROR = 4
    OPEN = 8  # accepted for compatibility, never delivered
    CLOSE = 16
    TIMEOUT = 128
    USER = 1 << 15


Events.__module__ = "packeteer_trio.scheduler"  # where users import it from

#: Every I/O event: the default of :meth:`Scheduler.unregister_connector`.
IO_EVENTS = Events.READ | Events.WRITE | Events.ERROR | Events.OPEN | Events.CLOSE

# Masks are plain ints inside (IntFlag operations cost ~0.3 us each, and its ~
# loses user bits above the named ones); callbacks and handles get Events.
READ, WRITE, ERROR, CLOSE = map(
    int, (Events.READ, Events.WRITE, Events.ERROR, Events.CLOSE)
)
WATCHABLE = READ | WRITE | ERROR | CLOSE
BELOW_USER = int(Events.USER) - 1
IO_EVENT_OF = tuple(Events(bits) for bits in range(32))  # bits -> Events, cheaply

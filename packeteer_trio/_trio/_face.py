"""The trio face's contract with the I/O core: trio's own primitives."""

from __future__ import annotations

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    notify_closing,
    wait_readable,
    wait_writable,
)

from .._io import Face

TRIO = Face(
    checkpoint=checkpoint,
    checkpoint_if_cancelled=checkpoint_if_cancelled,
    cancel_shielded_checkpoint=cancel_shielded_checkpoint,
    wait_readable=wait_readable,
    wait_writable=wait_writable,
    notify_closing=notify_closing,
    sleep=trio.sleep,
    closed_exception=trio.ClosedResourceError,
    broken_exception=trio.BrokenResourceError,
    busy_exception=trio.BusyResourceError,
)

# The scheduler's event bits (packeteer_trio.scheduler.Events), as the ints a
# _scheduler_wait hook returns: the faces sit below the scheduler and do not
# import it (tests/test_house.py checks that the values agree).
READ, WRITE, CLOSE = 1, 2, 16

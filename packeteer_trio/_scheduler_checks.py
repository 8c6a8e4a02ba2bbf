"""The scheduler's argument checks: at the call, so a bad value never reaches a task.

(In a registration's task it would fail later, out of ``async with
open_scheduler()``, cancelling everything.) Each message names the argument
and what it accepts.
"""

from __future__ import annotations

import math
import numbers
import operator
import os

from ._scheduler_events import Events


def check_mask(events: object, name: str = "events") -> Events:
    if isinstance(events, bool) or not isinstance(events, int):
        raise TypeError(
            f"{name} must be an Events mask (or an int of Events bits), "
            f"not {type(events).__name__} {events!r}"
        )
    return Events(events)


def check_callback(callback: object) -> None:
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {callback!r}")
    try:
        hash(callback)  # callbacks identify registrations (unschedule, merging)
    except TypeError:
        raise TypeError(f"callback must be hashable, not {callback!r}") from None


def check_seconds(value: object, name: str, *, least: float | None = 0) -> float:
    """*value* as float seconds: a real number, not NaN, at least *least*
    (None: any). ``inf`` is allowed where it means never, like trio.sleep."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a number of seconds, not {type(value).__name__} {value!r}"
        )
    seconds = float(value)
    if math.isnan(seconds):
        raise ValueError(f"{name} must be a number of seconds, not NaN")
    if least is not None and not seconds >= least:
        raise ValueError(f"{name} must be >= {least:g}, not {value!r}")
    return seconds


def check_count(count: object) -> int | None:
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise TypeError(
            f"count must be a whole number or None, not {type(count).__name__} "
            f"{count!r}"
        )
    if count < 1:
        raise ValueError(f"count must be >= 1 or None, not {count!r}")
    return operator.index(count)


def check_max_threads(max_threads: object) -> int:
    """The thread limiter's tokens: *max_threads*, or the CPU count for None."""
    if max_threads is None:
        return os.cpu_count() or 1
    if isinstance(max_threads, bool) or not isinstance(max_threads, int):
        raise TypeError(f"max_threads must be an int or None, not {max_threads!r}")
    if max_threads < 1:
        raise ValueError(f"max_threads must be >= 1, not {max_threads!r}")
    return max_threads

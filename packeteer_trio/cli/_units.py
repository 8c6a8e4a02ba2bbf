"""Units in human output: MB/s (10**6 bytes) and µs (or "us" where stdout
cannot encode it)."""

from __future__ import annotations

import sys


def _micro() -> str:
    try:
        "µ".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "us"
    return "µs"


US = _micro()


def mb_per_s(nbytes: int, seconds: float) -> float:
    """Decimal megabytes per second (MB = 10**6 bytes)."""
    return nbytes / 1e6 / seconds if seconds > 0 else 0.0

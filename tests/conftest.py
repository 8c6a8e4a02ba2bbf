"""Shared test helpers: descriptor counting and loopback capabilities."""

from __future__ import annotations

import os
import socket
import sys

import pytest


def open_fds() -> int:
    """How many descriptors this process has open right now."""
    if sys.platform.startswith("linux"):
        return len(os.listdir("/proc/self/fd"))
    return len(os.listdir("/dev/fd"))  # pragma: no cover


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(
    not has_ipv6_loopback(), reason="this host has no IPv6 loopback (::1)"
)
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="abstract socket names are Linux-only"
)
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX-only transport")

"""Shared test helpers: descriptor counting, loopback capabilities, and the
platform markers.

Platform markers (registered below, applied by ``pytest_collection_modifyitems``):

- ``@pytest.mark.posix_only(reason=...)``: a POSIX-only feature (AF_UNIX,
  FIFOs, signals, descriptors); skipped on Windows with the reason.
- ``@pytest.mark.linux_only(reason=...)``: skipped everywhere but Linux.
- ``@pytest.mark.wine_differs(reason=...)``: the test asserts what Windows
  does, and Wine is known to do otherwise (the reason names the Wine source
  or bug). It runs everywhere; under Wine only it is an expected failure
  (strict: once Wine behaves, the XPASS fails and the marker must go).
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
from typing import Any

import pytest
import trio

WINDOWS = sys.platform == "win32"
LINUX = sys.platform.startswith("linux")


def _under_wine() -> bool:
    """Whether this Windows process runs under Wine (ntdll exports
    ``wine_get_version`` there, never on Windows)."""
    if sys.platform == "win32":
        import ctypes

        try:
            return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")
        except OSError:  # pragma: no cover
            return False
    return False


UNDER_WINE = _under_wine()


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "posix_only(reason): a POSIX-only feature; skipped on Windows",
        "linux_only(reason): a Linux-only feature; skipped on other systems",
        "wine_differs(reason): Windows behaviour Wine does not have; "
        "an expected failure under Wine only",
    ):
        config.addinivalue_line("markers", line)


def _reason(mark: pytest.Mark, default: str) -> str:
    return str(mark.kwargs.get("reason", mark.args[0] if mark.args else default))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if WINDOWS and (mark := item.get_closest_marker("posix_only")):
            item.add_marker(pytest.mark.skip(reason=_reason(mark, "POSIX-only")))
        if not LINUX and (mark := item.get_closest_marker("linux_only")):
            item.add_marker(pytest.mark.skip(reason=_reason(mark, "Linux-only")))
        if UNDER_WINE and (mark := item.get_closest_marker("wine_differs")):
            reason = "Wine differs from Windows: " + _reason(mark, "")
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


def _windows_handle_count() -> int:  # pragma: no cover - Windows only
    """How many File handles (sockets, pipes, files) this process has open.

    Other kinds (threads, events, semaphores of worker threads that come and
    go) are not descriptors and are left out. Handles are found by probing
    the values (multiples of 4; a test process stays far below 1 << 16):
    Wine's GetProcessHandleCount always says 0.
    """
    if sys.platform != "win32":
        raise AssertionError("Windows only")
    else:
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        ntdll = ctypes.WinDLL("ntdll")
        probe = kernel32.GetHandleInformation
        probe.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
        query = ntdll.NtQueryObject
        query.argtypes = [
            wintypes.HANDLE,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.POINTER(ctypes.c_ulong),
        ]
        flags, size = wintypes.DWORD(0), ctypes.c_ulong(0)
        info = ctypes.create_string_buffer(1024)  # PUBLIC_OBJECT_TYPE_INFORMATION

        def is_file(handle: int) -> bool:
            if query(
                handle, 2, info, len(info), ctypes.byref(size)
            ):  # ObjectTypeInformation
                return False
            length = int.from_bytes(info.raw[:2], "little") // 2  # UNICODE_STRING
            address = ctypes.c_void_p.from_buffer(info, ctypes.sizeof(ctypes.c_void_p))
            return ctypes.wstring_at(address.value or 0, length) == "File"

        ref = ctypes.byref(flags)
        return sum(
            1
            for handle in range(4, 1 << 16, 4)
            if probe(handle, ref) and is_file(handle)
        )


def _trio_afd_handles() -> int:  # pragma: no cover - Windows only
    """The AFD helper handles of trio's IOCP manager in this run: a pool that
    grows with the peak number of socket waits and is closed only with the
    run, so not a leak of ours. (trio's private names; 0 if they change.)"""
    try:
        runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
    except AttributeError:  # not inside trio.run
        return 0
    return len(getattr(runner.io_manager, "_all_afd_handles", ()))


def open_fds() -> int:
    """How many descriptors (on Windows: handles) this process has open."""
    if LINUX:
        return len(os.listdir("/proc/self/fd"))
    if WINDOWS:  # pragma: no cover
        gc.collect()  # handles held by garbage (a cycle's socket) are not leaks
        return _windows_handle_count() - _trio_afd_handles()
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
# anyio's backends for tests that run on all of them (uvloop where installed):
# ``@pytest.fixture(params=ANYIO_BACKENDS) def anyio_backend(request): ...``.
ANYIO_BACKENDS: list[Any] = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param("trio", id="trio"),
]
try:
    import uvloop  # noqa: F401
except ImportError:  # pragma: no cover - not on Windows
    pass
else:
    ANYIO_BACKENDS.append(pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"))

linux_only = pytest.mark.linux_only(reason="abstract socket names are Linux-only")
posix_only = pytest.mark.posix_only(reason="POSIX-only transport (local://, fifo://)")


class NoReaderLoop(asyncio.SelectorEventLoop):
    """An asyncio loop without add_reader/add_writer, as Windows' default
    ProactorEventLoop: anyio code on it watches sockets from a thread."""

    add_reader = asyncio.AbstractEventLoop.add_reader
    add_writer = asyncio.AbstractEventLoop.add_writer
    remove_reader = asyncio.AbstractEventLoop.remove_reader
    remove_writer = asyncio.AbstractEventLoop.remove_writer

"""fd://'s ledger of the descriptors it holds, and of their blocking mode.

A descriptor belongs to at most one open ``fd://`` connector (a second one
is refused with EBUSY). O_NONBLOCK belongs to the open file *description*,
shared with every copy of the descriptor, so the original mode is put back
when the last ``fd://`` connector on the same file (and direction) closes;
see :mod:`.fd` for why.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import Protocol

from .._errors import PacketeerError
from .._url import URL

_owned: set[int] = set()  # descriptors an open fd:// connector holds
# Per file and direction (st_dev, st_ino, access mode): how many fd://
# connectors are open on it, and (duplicate, original blocking mode) for
# each, to put back after the last. The direction is in the key because both
# ends of a pipe are one inode, and a duplicate of the write end kept past
# its close would hold back the reader's end of file.
_open_count: dict[tuple[int, int, int], int] = {}
_saved_modes: dict[tuple[int, int, int], list[tuple[int, bool]]] = {}


def _posix_only() -> PacketeerError:  # pragma: no cover
    return PacketeerError("fd:// needs POSIX file descriptors")


def _get_blocking(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover
        raise _posix_only()
    return os.get_blocking(fd)


def _set_blocking(fd: int, blocking: bool) -> None:
    if sys.platform == "win32":  # pragma: no cover
        raise _posix_only()
    os.set_blocking(fd, blocking)


def access_mode(fd: int) -> int:
    """O_RDONLY, O_WRONLY or O_RDWR: how the descriptor was opened."""
    if sys.platform == "win32":  # pragma: no cover
        raise _posix_only()
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def check_free(fd: int, url: URL) -> None:
    if fd in _owned:
        raise OSError(
            errno.EBUSY,
            f"{url}: descriptor {fd} already belongs to an open fd:// connector",
        )


class Release(Protocol):
    def __call__(self, restore: bool = True) -> None: ...


def take(fd: int) -> Release:
    """Own *fd* and make it non-blocking; return the ``on_close`` that undoes it.

    The face closes the descriptor before it calls ``on_close``, so a
    duplicate (same description) is kept to put the mode back through. It
    outlives our descriptor only while another fd:// connector holds the
    same file in the same direction, so it never delays an end of file.
    ``release(restore=False)`` lets go of *fd* when it is handed over open
    (a detached listener): its mode is then its new owner's, left as it is.
    """
    info = os.fstat(fd)
    key = (info.st_dev, info.st_ino, access_mode(fd))
    original = _get_blocking(fd)
    keeper = os.dup(fd)
    try:
        _set_blocking(fd, False)
    except BaseException:
        os.close(keeper)
        raise
    _owned.add(fd)
    _open_count[key] = _open_count.get(key, 0) + 1
    entry = (keeper, original)
    _saved_modes.setdefault(key, []).append(entry)
    released = False

    def release(restore: bool = True) -> None:
        nonlocal released
        if released:
            return
        released = True
        _owned.discard(fd)
        _open_count[key] -= 1
        if not restore and _open_count[key]:
            _saved_modes[key].remove(entry)
            os.close(entry[0])
        if _open_count[key]:
            return  # another fd:// connector still uses this file
        del _open_count[key]
        # Newest first: a later connector on the same description saw the
        # mode an earlier one had already changed. Handed over, the
        # description is no longer ours to change.
        for keeper, original in reversed(_saved_modes.pop(key)):
            try:
                if restore:
                    _set_blocking(keeper, original)
            except OSError:
                pass
            os.close(keeper)

    return release


def _release_all(releases: list[Callable[[], None]]) -> Callable[[], None]:
    def release() -> None:
        for each in releases:
            each()

    return release


def release_all(
    releases: list[Callable[[], None]] | list[Release],
) -> Callable[[], None]:
    """One ``on_close`` for a listener holding several descriptors."""

    def release() -> None:
        for each in releases:
            each()

    return release


def forget_all(releases: list[Release]) -> Callable[[], None]:
    """A listener's ``on_detach``: let go of its descriptors, handed over open."""

    def forget() -> None:
        for each in releases:
            each(restore=False)

    return forget

"""What local:// and fifo:// share about files on disk: options, ``?nofollow``,
and removing a file only if it is still the one they made.

``?mode=`` is an octal permission (``0600``, at most ``0777``); ``?nofollow``
forbids symbolic links anywhere on the path: no directory on the way may be
one, nor the file itself. Both are checked by ``URL.parse`` (the option's
value) and when the connector is opened (the path on disk); see
``docs/security.md`` for what the check does and does not protect against.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import sys

from .._errors import InvalidURL
from .._url import URL

_MODE_RE = re.compile(r"[0-7]{1,4}\Z")
# Longest path (with its final NUL) and longest name in a directory that the
# OS takes: PATH_MAX and NAME_MAX of Linux, and of macOS and the BSDs.
PATH_MAX = 4096 if sys.platform.startswith("linux") else 1024
NAME_MAX = 255


def check_options(url: URL, text: str) -> None:
    """InvalidURL for a bad ``mode=`` or ``nofollow=`` value."""
    mode = url.query.get("mode")
    if mode is not None and (not _MODE_RE.match(mode) or int(mode, 8) > 0o777):
        raise InvalidURL(f"{text!r}: mode={mode!r} is not an octal mode like 0600")
    nofollow = url.query.get("nofollow")
    if nofollow is not None and nofollow not in ("0", "1"):
        raise InvalidURL(f"{text!r}: nofollow={nofollow!r} is not a boolean")


def encoded(path: str, text: str) -> bytes:
    """The path as the OS sees it; InvalidURL if it cannot be encoded."""
    try:
        return os.fsencode(path)
    except UnicodeError:
        raise InvalidURL(
            f"{text!r}: the path has characters this OS cannot encode (lone surrogates)"
        ) from None


def check_length(path: str, text: str) -> None:
    """InvalidURL naming the limit if the OS could never open *path*."""
    raw = encoded(path, text)
    if len(raw) >= PATH_MAX:
        raise InvalidURL(
            f"{text!r}: the path is {len(raw)} bytes; this OS allows at most "
            f"{PATH_MAX - 1} (PATH_MAX)"
        )
    longest = max(len(name) for name in raw.split(b"/"))
    if longest > NAME_MAX:
        raise InvalidURL(
            f"{text!r}: a name in the path is {longest} bytes; this OS allows at "
            f"most {NAME_MAX} (NAME_MAX)"
        )


def file_mode(url: URL) -> int | None:
    """The ``?mode=`` permissions, or None."""
    mode = url.query.get("mode")
    return None if mode is None else int(mode, 8)


def nofollow(url: URL) -> bool:
    return url.query.get("nofollow") == "1"


def refuse_symlinks(url: URL, path: str, *, final: bool) -> None:
    """With ``?nofollow``: raise OSError(ELOOP) if a component of *path* is a symlink.

    The message names the component; callers add the URL and the action
    (``with_url``), as for any OSError of theirs.

    Walks the path from the root with ``lstat``, as the kernel would resolve
    it; *final* says whether the last component is checked too (``connect``
    opens it; ``listen`` creates it and refuses any existing file itself).
    A component that does not exist ends the walk: the operation itself then
    fails, or creates it.
    """
    if not nofollow(url):
        return
    parts = [part for part in path.split("/") if part]
    if not final:
        parts = parts[:-1]
    prefix = ""
    for part in parts:
        prefix += "/" + part
        try:
            info = os.lstat(prefix)
        except (FileNotFoundError, NotADirectoryError):
            return
        if stat.S_ISLNK(info.st_mode):
            raise OSError(
                errno.ELOOP,
                f"{prefix} is a symbolic link and ?nofollow forbids following one",
            )


FileIdentity = tuple[int, int, int]


def identity(info: os.stat_result) -> FileIdentity:
    """What names one file on disk: device, inode and file type.

    The type is part of it because a freed inode number is soon reused: a
    socket file removed by someone else may come back as a regular file
    with the same ``(st_dev, st_ino)``.
    """
    return info.st_dev, info.st_ino, stat.S_IFMT(info.st_mode)


def unlink_if_same(path: str, expected: FileIdentity) -> bool:
    """Remove *path* if it is still the file *expected* names; say whether it was.

    POSIX has no "unlink if this inode", and ``lstat`` then ``unlink`` removes
    whatever was swapped in between the two calls. So a file that looks like
    ours is first renamed to a private name in the same directory (rename is
    atomic: what we then hold is exactly what was at *path*), checked there,
    and only then removed. Anything else goes back with ``link()``, which never
    replaces a file. What remains: for the few microseconds between the rename
    and the ``link``, *path* does not exist; a file someone creates at *path*
    in exactly that moment keeps it, and an OSError names the private name
    the swapped-in file was left under.
    """
    try:
        if identity(os.lstat(path)) != expected:
            return False  # the usual case: nothing is touched
    except FileNotFoundError:
        return False
    directory, name = os.path.split(path)
    private = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.removing")
    try:
        os.rename(path, private)
    except FileNotFoundError:
        return False
    try:
        if identity(os.lstat(private)) == expected:
            os.unlink(private)
            return True
    except OSError:
        _put_back(private, path)  # as found: a failed removal hides nothing
        raise
    _put_back(private, path)
    return False


def _put_back(private: str, path: str) -> None:
    """Return a file we moved by mistake to *path*, never replacing another."""
    try:
        os.link(private, path, follow_symlinks=False)
    except FileExistsError:
        pass
    except OSError:
        # No hard link possible (a directory, a file system without them, a
        # protected_hardlinks refusal): rename back unless something is there.
        # Between the check and the rename the window is open again, but a
        # directory is never lost that way (rename refuses a non-empty one).
        if not os.path.lexists(path):
            os.rename(private, path)
            return
    else:
        os.unlink(private)
        return
    raise FileExistsError(
        errno.EEXIST,
        f"{path} was replaced while being removed, and another file took its "
        f"place since; the file found there was left at {private}",
    )

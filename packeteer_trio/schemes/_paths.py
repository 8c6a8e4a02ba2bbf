"""What local:// and fifo:// share about files on disk: options and ``?nofollow``.

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

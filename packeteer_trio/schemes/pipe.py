r"""pipe:// — Windows named pipes: ``pipe:///name`` is ``\\.\pipe\name``.

Everything in this module is pure and importable on every platform (so it is
tested everywhere): the name mapping, URL validation, the name of an
``anon://`` pipe, the platform decision and the translation of Win32 error
codes into OSErrors. The connectors themselves live in
:mod:`._pipe_windows`, which is imported on Windows only; POSIX processes
never load it.

On POSIX ``pipe://`` is an :class:`UnsupportedScheme` naming ``local://`` and
``fifo://``. See ``docs/platforms.md`` for what has been run where.
"""

from __future__ import annotations

import errno
import sys

from .._endpoints import ListenerEndpoint, StreamEndpoint
from .._errors import InvalidURL
from .._registry import Scheme, register
from .._url import URL

PREFIX = "\\\\.\\pipe\\"
# "The pipename part of the name can include any character other than a
# backslash ... The entire pipe name string can be up to 256 characters long."
# We allow the backslash (slashes in the URL become backslashes, as packeteer
# does; NPFS has a flat namespace and takes them) and count the name part.
MAX_NAME_CHARS = 256

UNSUPPORTED_ON_POSIX = (
    "pipe:// (Windows named pipes) exists only on Windows; use local:///path "
    "(AF_UNIX) or fifo:///path on this platform"
)


def unsupported_reason(platform: str) -> str | None:
    """Why ``pipe://`` is unavailable on *platform* (``sys.platform``), or None."""
    return None if platform == "win32" else UNSUPPORTED_ON_POSIX


def validate(url: URL, text: str) -> URL:
    if url.host or url.port is not None:
        raise InvalidURL(f"{text!r}: pipe:// takes a name, not a host: pipe:///name")
    if url.path in ("", "/"):
        raise InvalidURL(f"{text!r}: pipe:// needs a name, e.g. pipe:///myapp")
    if "\0" in url.path:
        raise InvalidURL(f"{text!r}: a pipe name cannot contain NUL")
    # Win32 normalises \\.\ paths (.. climbs, trailing dots and spaces go):
    # \\.\pipe\..\C:\x would open the file C:\x, not a pipe.
    if any(not part.strip(". ") for part in _name_part(url).split("\\")):
        raise InvalidURL(
            f"{text!r}: a pipe name cannot have empty parts or parts of only "
            "dots and spaces, such as '..' (write pipe:///name or "
            "pipe:///group/name)"
        )
    size = len(_name_part(url))
    if size > MAX_NAME_CHARS:
        raise InvalidURL(
            f"{text!r}: the pipe name has {size} characters; Windows allows at "
            f"most {MAX_NAME_CHARS}"
        )
    return url


def _name_part(url: URL) -> str:
    return url.path.lstrip("/").replace("/", "\\")


def windows_name(url: URL) -> str:
    r"""``pipe:///foo`` → ``\\.\pipe\foo``; ``pipe:///a/b`` → ``\\.\pipe\a\b``."""
    return PREFIX + _name_part(url)


def anon_pipe_name(pid: int, serial: int, token: str) -> str:
    r"""The unique name behind one ``anon://`` pair on Windows.

    Like packeteer's ``create_anonymous_pipe_name``: process id and a serial
    number make it unique within the machine; the random *token* makes it
    unguessable, so no other process can take the name first.
    """
    return f"{PREFIX}packeteer-anon.{pid:08x}.{serial:08x}.{token}"


# -- Win32 error codes (winerror.h) that the Windows connectors interpret ------

ERROR_FILE_NOT_FOUND = 2
ERROR_PATH_NOT_FOUND = 3
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_NOT_ENOUGH_MEMORY = 8
ERROR_BROKEN_PIPE = 109
ERROR_SEM_TIMEOUT = 121
ERROR_INVALID_NAME = 123
ERROR_BAD_PATHNAME = 161
ERROR_PIPE_BUSY = 231
ERROR_NO_DATA = 232
ERROR_PIPE_NOT_CONNECTED = 233
ERROR_MORE_DATA = 234
ERROR_PIPE_CONNECTED = 535
ERROR_OPERATION_ABORTED = 995
ERROR_IO_PENDING = 997
ERROR_NOT_FOUND = 1168

# The errno each code means here; OSError(errno, ...) then picks the subclass
# (FileNotFoundError, PermissionError, BrokenPipeError, …) by itself.
_ERRNO = {
    ERROR_FILE_NOT_FOUND: errno.ENOENT,
    ERROR_PATH_NOT_FOUND: errno.ENOENT,
    ERROR_ACCESS_DENIED: errno.EACCES,
    ERROR_INVALID_HANDLE: errno.EBADF,
    ERROR_NOT_ENOUGH_MEMORY: errno.ENOMEM,
    ERROR_BROKEN_PIPE: errno.EPIPE,
    ERROR_SEM_TIMEOUT: errno.ETIMEDOUT,
    ERROR_INVALID_NAME: errno.EINVAL,
    ERROR_BAD_PATHNAME: errno.EINVAL,
    ERROR_PIPE_BUSY: errno.EBUSY,
    ERROR_NO_DATA: errno.EPIPE,
    ERROR_PIPE_NOT_CONNECTED: errno.EPIPE,
    ERROR_OPERATION_ABORTED: errno.ECANCELED,
}


def pipe_error(winerror: int, reason: str, url: URL | str, action: str) -> OSError:
    """The OSError for a failed Win32 call, naming the URL and the action.

    *reason* is the system's text for *winerror* (``ctypes.FormatError``).
    The class follows the errno (``FileNotFoundError`` …), so callers catch
    the same exceptions as on POSIX; three cases get the errno and wording
    the SPEC asks for: nobody listening on connect, a name that is already
    taken on listen, and all instances in use.
    """
    code = f"[WinError {winerror}]"
    if action == "connect" and winerror in (ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND):
        return OSError(
            errno.ENOENT,
            f"{url}: connect failed: no pipe of that name exists (is anything "
            f"listening?) {code}",
        )
    if action == "listen" and winerror == ERROR_ACCESS_DENIED:
        # FILE_FLAG_FIRST_PIPE_INSTANCE fails this way when the name exists.
        return OSError(
            errno.EADDRINUSE,
            f"{url}: listen failed: a pipe of that name already exists (another "
            f"server owns it, or denies us access) {code}",
        )
    if winerror == ERROR_PIPE_BUSY and action in ("listen", "accept"):
        # Every one of the 255 instances a pipe name may have is in use;
        # EMFILE makes trio.serve_listeners pause and retry, as for sockets.
        return OSError(
            errno.EMFILE,
            f"{url}: {action} failed: all instances of this pipe are in use {code}",
        )
    message = f"{url}: {action} failed: {reason.strip() or 'error'} {code}"
    number = _ERRNO.get(winerror)
    return OSError(message) if number is None else OSError(number, message)


if sys.platform == "win32":  # pragma: no cover - Linux CI cannot run this branch
    # The Windows module is loaded on first use, not at import: nothing of it
    # runs until a pipe:// or anon:// connector is opened, and it can import
    # the pure names above without an import cycle.

    async def _connect(url: URL) -> StreamEndpoint:
        from . import _pipe_windows

        return await _pipe_windows.connect(url)

    async def _listen(url: URL, backlog: int | None) -> ListenerEndpoint:
        from . import _pipe_windows

        return await _pipe_windows.listen(url, backlog)

    async def connect_anon(url: URL) -> StreamEndpoint:
        """``anon://`` on Windows: see :func:`._pipe_windows.connect_anon`."""
        from . import _pipe_windows

        return await _pipe_windows.connect_anon(url)

    register(Scheme("pipe", validate, connect=_connect, listen=_listen))
else:
    register(Scheme("pipe", unsupported=unsupported_reason(sys.platform)))

"""Windows named pipes' names, URL rules and errors: pure, importable
everywhere (so all of it is tested everywhere), and shared by the ``pipe``
scheme (:mod:`.pipe`) and its Windows connectors (:mod:`._pipe_windows`)."""

from __future__ import annotations

import errno

from .._errors import InvalidURL
from .._url import URL
from .._winerror import (
    ERROR_ACCESS_DENIED,
    ERROR_BAD_PATHNAME,
    ERROR_BROKEN_PIPE,
    ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_HANDLE,
    ERROR_INVALID_NAME,
    ERROR_NO_DATA,
    ERROR_NOT_ENOUGH_MEMORY,
    ERROR_OPERATION_ABORTED,
    ERROR_PATH_NOT_FOUND,
    ERROR_PIPE_BUSY,
    ERROR_PIPE_NOT_CONNECTED,
    ERROR_SEM_TIMEOUT,
)

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

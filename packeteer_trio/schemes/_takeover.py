"""local:// ``?takeover=1``: take over a live server's socket path with no
moment where connecting fails.

A restarting server usually unlinks the old socket file and binds a new one;
between the two, clients get ``FileNotFoundError`` or ``ConnectionRefused``.
With ``?takeover=1`` the new listener binds under a temporary name in the same
directory (so the rename cannot cross file systems) and ``rename()``s it over
the path: rename replaces atomically, so every ``connect()`` finds either the
old socket or the new one. The old server keeps accepting what is already in
its backlog and closes when it likes; its close leaves the new file alone,
because it removes only the file it made (the dev/ino check of
:func:`._paths.unlink_if_same`).

Only a socket (live or stale) or nothing is replaced: any other file at the
path is refused, as without the option. Between that check and the rename a
process that can write to the directory could swap something else in; it
could as well remove the socket. Abstract names cannot be renamed, and a
datagram socket keeps reporting its temporary name as the sender of what it
sends (replies would go nowhere), so both are refused when the URL is parsed.
The kernel goes on reporting the temporary name for the listener's
connections too (the client's ``peer_address``, the server side's
``local_address``).
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
from collections.abc import Callable

from .._errors import InvalidURL
from .._url import URL
from ._paths import FileIdentity, file_mode, identity, unlink_if_same
from ._unix import MAX_PATH_BYTES, is_abstract
from ._unix_diag import is_bound_by

# The temporary name: "." + 8 hex digits + ".tk" beside the target.
_TEMP_NAME_BYTES = 12


def requested(url: URL) -> bool:
    return url.query.get("takeover") == "1"


def check_option(url: URL, text: str) -> None:
    """InvalidURL for a ``takeover=`` that is no boolean or cannot apply."""
    value = url.query.get("takeover")
    if value is None or value == "0":
        return
    if value != "1":
        raise InvalidURL(f"{text!r}: takeover={value!r} is not a boolean")
    if not url.path or is_abstract(url):
        raise InvalidURL(
            f"{text!r}: takeover=1 applies to socket paths only (an abstract name "
            "cannot be renamed into place)"
        )
    if url.query.get("behaviour") in ("datagram", "dgram"):
        raise InvalidURL(
            f"{text!r}: takeover=1 applies to stream listeners only (a datagram "
            "socket would keep sending from its temporary name)"
        )
    directory = os.path.dirname(os.fsencode(url.path))
    if len(directory) + 1 + _TEMP_NAME_BYTES > MAX_PATH_BYTES:
        raise InvalidURL(
            f"{text!r}: takeover=1 binds a temporary name in {url.path}'s "
            f"directory first, and that path would exceed the OS's {MAX_PATH_BYTES} "
            "bytes; use a shorter directory"
        )


def _refuse_non_socket(url: URL) -> None:
    try:
        info = os.lstat(url.path)
    except FileNotFoundError:
        return  # nothing to take over: the rename just creates the path
    if not stat.S_ISSOCK(info.st_mode):
        raise FileExistsError(
            errno.EEXIST,
            f"{url}: listen failed: {url.path} exists and is not a socket; "
            "takeover=1 replaces only a socket",
        )


def bind_over(url: URL, sock: socket.socket) -> Callable[[], None] | None:
    """Bind *sock* at a temporary name, then rename it over the URL's path.

    Returns the cleanup that removes the file on close if it is still ours
    (a later takeover makes it someone else's).
    """
    path = url.path
    _refuse_non_socket(url)
    directory = os.path.dirname(path)
    temp = os.path.join(directory, f".{secrets.token_hex(4)}.tk")
    mode = file_mode(url)
    # As in local.bind: the umask is process-wide, and no await runs here.
    old_umask = None if mode is None else os.umask(0o777 & ~mode)
    try:
        sock.bind(temp)
    finally:
        if old_umask is not None:
            os.umask(old_umask)
    made = os.lstat(temp)
    ours: FileIdentity = identity(made)
    try:
        if not stat.S_ISSOCK(made.st_mode) or is_bound_by(sock, made) is False:
            raise FileExistsError(
                errno.EEXIST,
                f"{url}: listen failed: the temporary socket file {temp} was "
                "replaced before it could be renamed into place",
            )
        if mode is not None and stat.S_IMODE(made.st_mode) != mode:
            os.chmod(temp, mode)  # only where a default ACL overrode the umask
        _refuse_non_socket(url)  # again, as close to the rename as we can
        os.rename(temp, path)
    except BaseException:
        try:
            unlink_if_same(temp, ours)
        except OSError:
            pass
        raise

    def remove_if_ours() -> None:
        try:
            unlink_if_same(path, ours)
        except OSError:
            pass

    return remove_if_ours

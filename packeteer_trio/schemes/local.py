"""local:// — AF_UNIX sockets: paths, abstract names, unnamed pairs.

``local:///run/app.sock`` is a path, ``local:///%00name`` the Linux abstract
name ``"\\0name"`` (nothing on disk), and ``local://`` an unnamed socketpair
whose writes read back. A listener owns its socket file: it replaces only a
stale socket (one nobody answers on), never any other file, and removes the
file on close if it is still the one it made. ``?mode=0600`` (octal) sets the
file's permissions, applied at bind time under a tightened umask so there is
no moment when the socket is more open than asked. ``?nofollow`` refuses a
path with a symbolic link in it (a directory on the way, or the socket file
itself): OSError(ELOOP), checked when the connector is opened; see
``docs/security.md``.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
from collections.abc import Callable

import anyio

import packeteer_trio.schemes._seqpacket as _seqpacket
import packeteer_trio.schemes._takeover as _takeover

from .._accept import MAX_BACKLOG
from .._endpoints import DatagramEndpoint, StreamEndpoint
from .._errors import InvalidURL, UnsupportedScheme, with_url
from .._registry import Scheme, register
from .._sockinfo import socket_url
from .._url import URL
from ._inet import MAX_INTERRUPTS
from ._listener import SocketListenerEndpoint
from ._paths import (
    check_options,
    encoded,
    file_mode,
    identity,
    refuse_symlinks,
    unlink_if_same,
)
from ._unix import (
    AF_UNIX,
    MAX_ABSTRACT_BYTES,
    MAX_PATH_BYTES,
    is_abstract,
    is_padded,
    sockaddr,
    unix_addressing,
)
from ._unix_diag import is_bound_by, is_bound_here

DEFAULT_BACKLOG = 0xFFFF
UNSUPPORTED_WITHOUT_AF_UNIX = (
    "local:// (AF_UNIX) is not available: this Python's socket module has no "
    "AF_UNIX on this platform (on Windows, CPython lacks it even where the OS "
    "has it, see CPython issue #77589); use pipe:///name (Windows named pipes) "
    "or tcp://127.0.0.1:PORT instead"
)


def unsupported_reason(has_af_unix: bool) -> str | None:
    """Why local:// is unavailable (``hasattr(socket, "AF_UNIX")``), or None."""
    return None if has_af_unix else UNSUPPORTED_WITHOUT_AF_UNIX


def validate(url: URL, text: str) -> URL:
    if url.host or url.port is not None:
        raise InvalidURL(
            f"{text!r}: local:// takes a path, not a host: write local:///abs/path"
        )
    if url.path == "/":
        raise InvalidURL(f"{text!r}: local:/// needs a path or an abstract name")
    if url.path:
        if is_abstract(url) and not sys.platform.startswith("linux"):
            raise UnsupportedScheme(
                f"{text!r}: abstract socket names exist only on Linux; use a path"
            )
        size = len(encoded(sockaddr(url), text))
        limit = MAX_ABSTRACT_BYTES if is_abstract(url) else MAX_PATH_BYTES
        if size > limit:
            raise InvalidURL(
                f"{text!r}: the socket address is {size} bytes; this OS allows "
                f"at most {limit}"
            )
        if "\0" in url.path and not is_abstract(url):
            raise InvalidURL(f"{text!r}: NUL is allowed only to start an abstract name")
    padded = url.query.get("padded")
    if padded is not None:
        if padded not in ("0", "1"):
            raise InvalidURL(f"{text!r}: padded={padded!r} is not a boolean")
        if padded == "1" and not is_abstract(url):
            raise InvalidURL(
                f"{text!r}: padded=1 applies only to abstract names (local:///%00name)"
            )
    check_options(url, text)
    _seqpacket.check(url, text)
    _takeover.check_option(url, text)
    return url


async def connect_unix(sock: socket.socket, address: str) -> None:
    """Non-blocking AF_UNIX connect.

    Linux answers EAGAIN (not EINPROGRESS) when the listener's backlog is
    full, and the connection was then *not* made: retry it, briefly backing
    off, instead of waiting for writability as for TCP. An AF_UNIX connect
    completes or fails within the call, so EINTR too means "not made": retry
    at once (EISCONN then would mean it was made after all).
    """
    sock.setblocking(False)
    pause, interrupted = 0.001, 0
    while True:
        try:
            sock.connect(address)
            return
        except BlockingIOError:
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.05)
        except InterruptedError:
            interrupted += 1
            if interrupted > MAX_INTERRUPTS:
                raise
        except OSError as exc:
            if interrupted and exc.errno == errno.EISCONN:
                return
            raise


def _socket(url: URL, kind: int, action: str) -> socket.socket:
    """A new AF_UNIX socket; if the system has none to give (EMFILE, ENOBUFS
    …), the error names the URL."""
    try:
        return socket.socket(AF_UNIX, kind)
    except OSError as exc:
        raise with_url(exc, url, action) from exc


def _socketpair(url: URL, kind: int) -> tuple[socket.socket, socket.socket]:
    try:
        return socket.socketpair(AF_UNIX, kind)
    except OSError as exc:
        raise with_url(exc, url, "connect") from exc


async def connect(url: URL) -> StreamEndpoint:
    if not url.path:
        # An unnamed pair: what is written on one end is read from the other.
        write_end, read_end = _socketpair(url, socket.SOCK_STREAM)
        for end in (write_end, read_end):
            end.setblocking(False)
        return StreamEndpoint(
            url=url, write_fd=write_end.detach(), read_fd=read_end.detach()
        )
    sock = _socket(url, _seqpacket.stream_kind(url), "connect")
    try:
        if not is_abstract(url):
            refuse_symlinks(url, url.path, final=True)
        await connect_unix(sock, sockaddr(url))
    except OSError as exc:
        sock.close()
        raise with_url(exc, url, "connect") from exc
    except BaseException:
        sock.close()
        raise
    return StreamEndpoint(url=_stream_url(url), sock=sock)


def _stream_url(url: URL) -> URL:
    # ?padded is part of the address, ?behaviour=seqpacket the socket type;
    # every other option was about opening.
    query = {"padded": "1"} if is_padded(url) else {}
    if url.behaviour == "seqpacket":
        query["behaviour"] = "seqpacket"
    return url.replace(query=query, fragment="")


def clear_stale_socket(url: URL, kind: int) -> None:
    """Make room at the URL's path, or refuse with a clear error.

    Only a socket file that nobody answers on is removed. Anything else at the
    path (regular file, directory, symlink, a live socket) stays untouched.
    A live server is recognised without contacting it where the OS can tell
    (Linux, a server in this network namespace: see :mod:`._unix_diag`);
    otherwise a ``connect()`` probe decides, which a live server sees as an
    empty connection.
    """
    path = url.path
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        kind_name = (
            "a symlink"
            if stat.S_ISLNK(info.st_mode)
            else "a directory"
            if stat.S_ISDIR(info.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(info.st_mode)
            else "a file"
        )
        raise FileExistsError(
            errno.EEXIST,
            f"{url}: listen failed: {path} exists and is {kind_name}, not a stale "
            "socket; refusing to replace it",
        )
    in_use = OSError(
        errno.EADDRINUSE, f"{url}: listen failed: a running server owns {path}"
    )
    if is_bound_here(info):
        raise in_use
    if not _refuses_connections(path, kind):
        raise in_use
    # Stale. Remove exactly the socket file we examined, not whatever may
    # have been swapped in since.
    if not unlink_if_same(path, identity(info)):
        raise FileExistsError(
            errno.EEXIST,
            f"{url}: listen failed: {path} changed while it was being checked; "
            "refusing to replace it",
        )


def _refuses_connections(path: str, kind: int) -> bool:
    """Probe: does connecting to the socket file at *path* get refused?"""
    probe = socket.socket(AF_UNIX, kind)
    try:
        probe.setblocking(False)
        probe.connect(path)
    except ConnectionRefusedError:
        return True  # stale: its server is gone
    except OSError:
        pass  # EAGAIN (busy backlog), EPROTOTYPE (other kind): someone is there
    finally:
        probe.close()
    return False


def bind(url: URL, sock: socket.socket) -> Callable[[], None] | None:
    """Bind *sock* at the URL; return the cleanup that removes the file, if any."""
    address = sockaddr(url)
    if is_abstract(url):
        sock.bind(address)
        return None
    refuse_symlinks(url, address, final=False)
    if _takeover.requested(url):
        return _takeover.bind_over(url, sock)
    clear_stale_socket(url, sock.type)
    mode = file_mode(url)
    if mode is None:
        sock.bind(address)
    else:
        # The umask is process-wide; bind is quick and there is no await here,
        # so within this trio thread nothing else runs in between.
        old = os.umask(0o777 & ~mode)
        try:
            sock.bind(address)
        finally:
            os.umask(old)
    # lstat, not stat: if the path were swapped for a symlink meanwhile, this
    # names the link, and close() removes at most the link, never its target.
    made = os.lstat(address)
    # Where the OS can tell, make sure the file is our socket's: what lstat
    # found may have been swapped in since bind().
    is_ours = stat.S_ISSOCK(made.st_mode) and is_bound_by(sock, made) is not False
    if mode is not None and is_ours and stat.S_IMODE(made.st_mode) != mode:
        # Only where a default ACL overrode the umask. Never through a
        # symlink: lstat just saw our socket there.
        os.chmod(address, mode)
    if not is_ours:
        return None
    ours = identity(made)

    def remove_if_ours() -> None:
        try:
            unlink_if_same(address, ours)
        except OSError:
            pass

    return remove_if_ours


async def listen(url: URL, backlog: int | None) -> SocketListenerEndpoint:
    if not url.path:
        raise InvalidURL(
            f"{url}: an unnamed local:// has no address to listen on; give a path "
            "(local:///tmp/x.sock) or an abstract name (local:///%00name)"
        )
    sock = _socket(url, _seqpacket.stream_kind(url), "listen")
    try:
        sock.setblocking(False)
        cleanup = bind(url, sock)
        try:
            sock.listen(MAX_BACKLOG if backlog is None else backlog)
        except BaseException:
            if cleanup is not None:
                cleanup()
            raise
    except OSError as exc:
        sock.close()
        if exc.strerror and str(url) in exc.strerror:
            raise
        raise with_url(exc, url, "listen") from exc
    except BaseException:
        sock.close()
        raise
    return SocketListenerEndpoint([sock], _stream_url(url), on_close=cleanup)


# -- ?behaviour=datagram ------------------------------------------------------


def _datagram_url(url: URL) -> URL:
    return url.replace(query={"behaviour": "datagram"}, fragment="")


def _datagram_pair(url: URL) -> DatagramEndpoint:
    """An unnamed pair: receive on one end what is sent through the other."""
    receive_end, send_end = _socketpair(url, socket.SOCK_DGRAM)
    for end in (receive_end, send_end):
        end.setblocking(False)
    _seqpacket.passcred(url, receive_end)
    own = _datagram_url(url)
    lookup, resolve = unix_addressing(own, pair=True)
    return DatagramEndpoint(receive_end, own, lookup, resolve, send_sock=send_end)


def _bound_datagram_socket(
    url: URL, action: str, options: URL | None = None
) -> tuple[socket.socket, Callable[[], None] | None]:
    """A datagram socket bound at *url*, with the socket options (passcred)
    of *options* (default: *url*) set before it is bound."""
    sock = _socket(url, socket.SOCK_DGRAM, action)
    try:
        sock.setblocking(False)
        _seqpacket.passcred(options or url, sock)
        cleanup = bind(url, sock)
    except OSError as exc:
        sock.close()
        if exc.strerror and str(url) in exc.strerror:
            raise  # clear_stale_socket's refusals already say it all
        raise with_url(exc, url, action) from exc
    except BaseException:
        sock.close()
        raise
    return sock, cleanup


async def open_datagram(url: URL) -> DatagramEndpoint:
    if not url.path:
        return _datagram_pair(url)
    sock, cleanup = _bound_datagram_socket(url, "bind")
    # What receivers will see as our sender address, so the two compare equal.
    own = socket_url(sock, peer=False)
    lookup, resolve = unix_addressing(own, pair=False)
    return DatagramEndpoint(sock, own, lookup, resolve, on_close=cleanup)


async def connect_datagram(url: URL, local: URL | None) -> DatagramEndpoint:
    if local is not None and (local.scheme != "local" or not local.path):
        raise InvalidURL(
            f"{url}: local={local} must be a local:// path or abstract name"
        )
    if not url.path:
        if local is not None:
            raise InvalidURL(f"{url}: an unnamed pair takes no local= address")
        return _datagram_pair(url)
    if local is not None:
        sock, cleanup = _bound_datagram_socket(local, "bind", url)
    else:
        sock, cleanup = _socket(url, socket.SOCK_DGRAM, "connect"), None
    try:
        sock.setblocking(False)
        if local is None:
            _seqpacket.passcred(url, sock)
        if local is None and sys.platform.startswith("linux"):
            # Autobind to a kernel-chosen abstract name, so that the peer's
            # replies have somewhere to go (an unbound sender has no address).
            sock.bind("")
        if not is_abstract(url):
            refuse_symlinks(url, url.path, final=True)
        sock.connect(sockaddr(url))  # never blocks for AF_UNIX datagrams
        peer = socket_url(sock, peer=True)
    except BaseException as exc:
        sock.close()
        if cleanup is not None:
            cleanup()
        if isinstance(exc, OSError):
            raise with_url(exc, url, "connect") from exc
        raise
    return DatagramEndpoint(sock, peer, on_close=cleanup)


SCHEME = Scheme(
    "local",
    validate,
    connect=connect,
    listen=listen,
    open_datagram=open_datagram,
    connect_datagram=connect_datagram,
    seqpacket=True,  # refused per platform by _seqpacket.check
)
_reason = unsupported_reason(hasattr(socket, "AF_UNIX"))
register(SCHEME if _reason is None else Scheme("local", unsupported=_reason))

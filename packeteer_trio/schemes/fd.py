"""fd:// — descriptors the process already has: handed over, inherited, activated.

``fd:///N`` wraps descriptor N, ``fd:///stdin``, ``fd:///stdout`` and
``fd:///stderr`` the standard streams. What the descriptor is decides what
you get:

- a connected stream socket: ``connect`` gives a SocketStream (addresses,
  socket options, peer credentials);
- a pipe, FIFO, terminal or file: ``connect`` gives a PipeStream, one-way if
  the descriptor was opened one-way (``stdin`` only reads, ``stdout`` and
  ``stderr`` only write);
- a listening stream socket: ``listen``/``serve`` give a Listener whose
  ``url`` is the bound address (a bound socket that is not listening yet is
  made to listen);
- a datagram socket, with ``?behaviour=datagram``: ``open_datagram`` if it is
  bound and unconnected, ``connect_datagram`` if it is connected.

``fd://listen/NAME`` and ``fd://listen/INDEX`` (digits are an index) are the
sockets a service manager passed: systemd socket activation. ``LISTEN_FDS``
descriptors from 3 on, ``LISTEN_PID`` must be this process,
``LISTEN_FDNAMES`` (colon-separated) names them, ``unknown`` if unset. A name
shared by several sockets (one unit with several ``ListenStream=``) listens
on all of them. Each inherited socket can be taken once.

Ownership, as in packeteer: the connector takes the descriptor, and closing
it closes N. The standard streams are the exception: the connector works on
a duplicate and leaves 0, 1 and 2 open, because a closed fd 1 would make the
next file opened become stdout.

Blocking mode: the faces need O_NONBLOCK, which belongs to the open file
*description* and so is shared with every copy of the descriptor, in this
process and in others (the shell's terminal; systemd's own copy of a
socket). While the connector is open those copies are non-blocking too
(``print`` may then raise BlockingIOError on a full terminal). On close the
original mode is put back, as trio's FdStream does, once the last fd://
connector on the same file is closed: stdin and stdout of a terminal are
usually one description, and making it blocking under a live reader would
freeze the event loop.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
from collections.abc import Callable

from .. import _sockinfo
from .._endpoints import (
    DatagramEndpoint,
    SockAddr,
    SocketListenerEndpoint,
    StreamEndpoint,
)
from .._errors import InvalidURL, PacketeerError, SocketActivationError, with_url
from .._registry import Scheme, register
from .._url import URL
from . import local, tcp, udp

# name -> (descriptor, the one direction it is used in)
STDIO = {"stdin": (0, "r"), "stdout": (1, "w"), "stderr": (2, "w")}
LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START: the first passed descriptor
_MAX_FD = 2**31 - 1
_SO_ACCEPTCONN = getattr(socket, "SO_ACCEPTCONN", None)
_INET = (socket.AF_INET, socket.AF_INET6)
_USAGE = (
    "write fd:///N (N >= 0), fd:///stdin, fd:///stdout, fd:///stderr "
    "or fd://listen/NAME"
)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def validate(url: URL, text: str) -> URL:
    if url.port is not None:
        raise InvalidURL(f"{text!r}: fd:// takes no port; {_USAGE}")
    body = url.path[1:]  # the path is empty or starts with "/"
    if url.host == "listen":
        if not body:
            raise InvalidURL(
                f"{text!r}: fd://listen/ needs a name or an index, e.g. "
                "fd://listen/0 or fd://listen/web"
            )
        if "/" in body or ":" in body or not body.isprintable():
            raise InvalidURL(
                f"{text!r}: {body!r} is not a descriptor name "
                "(no '/', ':' or control characters)"
            )
        return url.replace(path="/" + (str(int(body)) if _is_number(body) else body))
    if url.host:
        raise InvalidURL(f"{text!r}: fd:// has no host {url.host!r}; {_USAGE}")
    if body.lower() in STDIO:
        return url.replace(path="/" + body.lower())
    if _is_number(body) and int(body) <= _MAX_FD:
        return url.replace(path=f"/{int(body)}")
    what = f"{body!r} is not a descriptor number" if body else "a descriptor is needed"
    raise InvalidURL(f"{text!r}: {what}; {_USAGE}")


# -- owning descriptors and their blocking mode --------------------------------

_owned: set[int] = set()  # descriptors an open fd:// connector holds
# Per file and direction (st_dev, st_ino, access mode): how many fd://
# connectors are open on it, and (duplicate, original blocking mode) for
# each, to put back after the last. The direction is in the key because both
# ends of a pipe are one inode, and a duplicate of the write end kept past
# its close would hold back the reader's end of file.
_open_count: dict[tuple[int, int, int], int] = {}
_saved_modes: dict[tuple[int, int, int], list[tuple[int, bool]]] = {}
_spent: set[int] = set()  # inherited activation descriptors already taken


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


def _access_mode(fd: int) -> int:
    """O_RDONLY, O_WRONLY or O_RDWR: how the descriptor was opened."""
    if sys.platform == "win32":  # pragma: no cover
        raise _posix_only()
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def _check_free(fd: int, url: URL) -> None:
    if fd in _owned:
        raise OSError(
            errno.EBUSY,
            f"{url}: descriptor {fd} already belongs to an open fd:// connector",
        )


def _take(fd: int) -> Callable[[], None]:
    """Own *fd* and make it non-blocking; return the ``on_close`` that undoes it.

    The face closes the descriptor before it calls ``on_close``, so a
    duplicate (same description) is kept to put the mode back through. It
    outlives our descriptor only while another fd:// connector holds the
    same file in the same direction, so it never delays an end of file.
    """
    info = os.fstat(fd)
    key = (info.st_dev, info.st_ino, _access_mode(fd))
    original = _get_blocking(fd)
    keeper = os.dup(fd)
    try:
        _set_blocking(fd, False)
    except BaseException:
        os.close(keeper)
        raise
    _owned.add(fd)
    _open_count[key] = _open_count.get(key, 0) + 1
    _saved_modes.setdefault(key, []).append((keeper, original))
    released = False

    def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        _owned.discard(fd)
        _open_count[key] -= 1
        if _open_count[key]:
            return  # another fd:// connector still uses this file
        del _open_count[key]
        # Newest first: a later connector on the same description saw the
        # mode an earlier one had already changed.
        for keeper, original in reversed(_saved_modes.pop(key)):
            try:
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


def _raise_with_url(exc: OSError, url: URL, action: str) -> OSError:
    if exc.strerror and str(url) in exc.strerror:
        return exc  # already says which URL
    return with_url(exc, url, action)


# -- what a descriptor is -------------------------------------------------------


def _is_listening(sock: socket.socket) -> bool:
    if _SO_ACCEPTCONN is None:  # pragma: no cover
        return False
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, _SO_ACCEPTCONN))
    except OSError:  # pragma: no cover
        return False


def _is_connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def _describe(sock: socket.socket) -> str:
    if sock.type == socket.SOCK_DGRAM:
        return "connected datagram" if _is_connected(sock) else "datagram"
    if sock.type == socket.SOCK_STREAM:
        return "listening" if _is_listening(sock) else "stream"
    return f"type-{int(sock.type)}"


def _socket_at(fd: int, url: URL, verb: str) -> socket.socket:
    """A socket object on *fd* (not owned yet: ``detach()`` gives it back)."""
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        raise InvalidURL(f"{url}: descriptor {fd} is not a socket; {verb}() needs one")
    return socket.socket(fileno=fd)


def _own_url(sock: socket.socket, url: URL, *, peer: bool = False) -> URL:
    """The socket's address as a URL (tcp4://…, local:///…), else *url*."""
    try:
        return _sockinfo.socket_url(sock, peer=peer)
    except (OSError, PacketeerError):
        return url


def _number(url: URL, verb: str) -> tuple[int, str | None]:
    """Descriptor and forced direction of ``fd:///N`` and the standard names."""
    if url.host == "listen":
        raise InvalidURL(
            f"{url}: fd://listen/… names listening sockets passed by a service "
            f"manager; {verb}() cannot use them: use listen() or serve()"
        )
    name = url.path[1:]
    if name in STDIO:
        return STDIO[name]
    return int(name), None


# -- socket activation ------------------------------------------------------


def listen_fds() -> list[tuple[int, str]]:
    """The sockets a service manager passed, as ``(descriptor, name)`` pairs.

    Reads ``LISTEN_FDS``, ``LISTEN_PID`` and ``LISTEN_FDNAMES`` (the systemd
    protocol); raises SocketActivationError when they are missing, are meant
    for another process, or do not add up. Nothing is opened or changed.
    """
    return _passed("socket activation")


def _passed(where: str) -> list[tuple[int, str]]:
    count_text = os.environ.get("LISTEN_FDS")
    pid_text = os.environ.get("LISTEN_PID")
    if count_text is None:
        raise SocketActivationError(
            f"{where}: this process was not socket-activated: LISTEN_FDS is not "
            "set (start it from a systemd .socket unit, or for a try "
            "`systemd-socket-activate -l 8080 python app.py`)"
        )
    if pid_text is None:
        raise SocketActivationError(
            f"{where}: LISTEN_FDS is set but LISTEN_PID is not; a service "
            "manager sets both"
        )
    if not _is_number(pid_text) or int(pid_text) != os.getpid():
        raise SocketActivationError(
            f"{where}: LISTEN_PID={pid_text} is not this process (pid "
            f"{os.getpid()}): the sockets were passed to another process (a "
            "parent that left LISTEN_FDS in the environment?)"
        )
    if not _is_number(count_text):
        raise SocketActivationError(
            f"{where}: LISTEN_FDS={count_text!r} is not a number of descriptors"
        )
    count = int(count_text)
    names_text = os.environ.get("LISTEN_FDNAMES")
    names = ["unknown"] * count if names_text is None else names_text.split(":")
    if count == 0 and names_text == "":
        names = []
    if len(names) != count:
        raise SocketActivationError(
            f"{where}: LISTEN_FDNAMES has {len(names)} names for LISTEN_FDS="
            f"{count} descriptors"
        )
    return [(LISTEN_FDS_START + index, name) for index, name in enumerate(names)]


def _activated(url: URL) -> list[int]:
    """The inherited descriptors ``fd://listen/NAME`` (or ``/INDEX``) names."""
    passed = _passed(str(url))
    key = url.path[1:]
    if _is_number(key):
        index = int(key)
        if index >= len(passed):
            raise SocketActivationError(
                f"{url}: there is no descriptor {index}: {len(passed)} were "
                f"passed (LISTEN_FDS={len(passed)}; indexes start at 0)"
            )
        fds = [passed[index][0]]
    else:
        fds = [fd for fd, name in passed if name == key]
        if not fds:
            known = ", ".join(sorted({name for _, name in passed})) or "none"
            raise SocketActivationError(
                f"{url}: no inherited descriptor is named {key!r} "
                f"(LISTEN_FDNAMES has: {known})"
            )
    for fd in fds:
        if fd in _spent:
            raise SocketActivationError(
                f"{url}: inherited descriptor {fd} was already taken by an "
                "earlier fd://listen/ connector; each can be taken once"
            )
    return fds


def _claim(fds: list[int]) -> None:
    for fd in fds:
        _spent.add(fd)
        # As sd_listen_fds() does: not passed on to programs we exec.
        os.set_inheritable(fd, False)


# -- streams --------------------------------------------------------------------


async def connect(url: URL) -> StreamEndpoint:
    number, direction = _number(url, "connect")
    try:
        _check_free(number, url)
        os.fstat(number)  # EBADF: nothing is open under that number
        # The standard streams stay open: we work on a copy (see the docstring).
        fd = number if direction is None else os.dup(number)
    except OSError as exc:
        raise _raise_with_url(exc, url, "connect") from exc
    try:
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            return _socket_stream(fd, url)
        return _pipe_stream(fd, direction, url)
    except BaseException as exc:
        if fd != number:
            os.close(fd)
        if isinstance(exc, OSError):
            raise _raise_with_url(exc, url, "connect") from exc
        raise


def _socket_stream(fd: int, url: URL) -> StreamEndpoint:
    sock = socket.socket(fileno=fd)
    try:
        if sock.type != socket.SOCK_STREAM or _is_listening(sock):
            kind = _describe(sock)
            use = {
                "listening": "listen() or serve()",
                "datagram": "open_datagram() with ?behaviour=datagram",
                "connected datagram": "connect_datagram() with ?behaviour=datagram",
            }.get(kind, "another descriptor")
            raise InvalidURL(f"{url}: descriptor {fd} is a {kind} socket; use {use}")
        if not _is_connected(sock):
            raise InvalidURL(f"{url}: the socket on descriptor {fd} is not connected")
        if sock.family in _INET:
            tcp._configure(sock)  # TCP_NODELAY, as every packeteer/trio stream
        release = _take(fd)
    except BaseException:
        sock.detach()  # not ours after all: leave the descriptor open
        raise
    sock.setblocking(False)
    return StreamEndpoint(url=url, sock=sock, on_close=release)


def _pipe_stream(fd: int, direction: str | None, url: URL) -> StreamEndpoint:
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        raise InvalidURL(f"{url}: the descriptor is a directory, not a stream")
    mode = _access_mode(fd)
    readable = mode in (os.O_RDONLY, os.O_RDWR) and direction != "w"
    writable = mode in (os.O_WRONLY, os.O_RDWR) and direction != "r"
    if not (readable or writable):
        opened = "writing" if mode == os.O_WRONLY else "reading"
        raise InvalidURL(f"{url}: the descriptor is open for {opened} only")
    # A two-way descriptor gets a second number for the writing side, so
    # that send_eof() and close each close their own.
    write_fd = os.dup(fd) if readable and writable else fd
    try:
        release = _take(fd)
    except BaseException:
        if write_fd != fd:
            os.close(write_fd)
        raise
    return StreamEndpoint(
        url=url,
        read_fd=fd if readable else None,
        write_fd=write_fd if writable else None,
        on_close=release,
    )


async def listen(url: URL, backlog: int | None) -> SocketListenerEndpoint:
    activation = url.host == "listen"
    if activation:
        fds = _activated(url)
    else:
        number, direction = _number(url, "listen")
        if direction is not None:
            raise InvalidURL(
                f"{url}: {url.path[1:]} is not a listening socket; listen() takes "
                "fd:///N or fd://listen/NAME"
            )
        fds = [number]
    socks: list[socket.socket] = []
    releases: list[Callable[[], None]] = []
    try:
        for fd in fds:
            _check_free(fd, url)
            sock = _socket_at(fd, url, "listen")
            socks.append(sock)
            kind = _describe(sock)
            if kind not in ("stream", "listening"):
                raise InvalidURL(
                    f"{url}: descriptor {fd} is a {kind} socket; use "
                    "open_datagram() or connect_datagram() with ?behaviour=datagram"
                )
            if _is_connected(sock):
                raise InvalidURL(
                    f"{url}: descriptor {fd} is a connected socket; use connect()"
                )
            if kind == "stream" or backlog is not None:
                # Bound by someone else but not listening yet, or a new backlog.
                sock.listen(tcp.DEFAULT_BACKLOG if backlog is None else backlog)
        for sock in socks:
            releases.append(_take(sock.fileno()))
    except BaseException as exc:
        _release_all(releases)()
        for sock in socks:
            sock.detach()
        if isinstance(exc, OSError):
            raise _raise_with_url(exc, url, "listen") from exc
        raise
    if activation:
        _claim(fds)
    for sock in socks:
        sock.setblocking(False)
    first = socks[0]
    return SocketListenerEndpoint(
        socks,
        _own_url(first, url),
        configure=tcp._configure if first.family in _INET else None,
        on_close=_release_all(releases),
    )


# -- datagrams --------------------------------------------------------------------


def _datagram_socket(
    url: URL, verb: str, *, connected: bool
) -> tuple[socket.socket, Callable[[], None]]:
    activation = url.host == "listen"
    if activation:
        fds = _activated(url)
        if len(fds) != 1:
            raise SocketActivationError(
                f"{url}: the name stands for {len(fds)} descriptors; a datagram "
                "socket is one: use fd://listen/INDEX"
            )
        fd = fds[0]
    else:
        fd, direction = _number(url, verb)
        if direction is not None:
            raise InvalidURL(f"{url}: {url.path[1:]} is not a datagram socket")
    try:
        _check_free(fd, url)
        sock = _socket_at(fd, url, verb)
    except OSError as exc:
        raise _raise_with_url(exc, url, verb) from exc
    try:
        if sock.type != socket.SOCK_DGRAM:
            raise InvalidURL(
                f"{url}: descriptor {fd} is a {_describe(sock)} socket; use "
                "connect() or listen() (without ?behaviour=datagram)"
            )
        if _is_connected(sock) != connected:
            raise InvalidURL(
                f"{url}: the datagram socket on descriptor {fd} is connected; "
                "use connect_datagram()"
                if not connected
                else f"{url}: the datagram socket on descriptor {fd} is not "
                "connected; use open_datagram()"
            )
        release = _take(fd)
    except BaseException as exc:
        sock.detach()
        if isinstance(exc, OSError):
            raise _raise_with_url(exc, url, verb) from exc
        raise
    if activation:
        _claim([fd])
    sock.setblocking(False)
    return sock, release


async def open_datagram(url: URL) -> DatagramEndpoint:
    sock, release = _datagram_socket(url, "open_datagram", connected=False)
    own = _own_url(sock, url)
    # Destinations are URLs of the socket's own kind: udp for IP, local for
    # AF_UNIX; the scheme modules already know how to turn those into
    # addresses.
    if sock.family in _INET:
        lookup, resolve = udp._addressing(own, sock.family)
        return DatagramEndpoint(sock, own, lookup, resolve, on_close=release)
    if sock.family == getattr(socket, "AF_UNIX", None):
        unix_lookup = local._lookup_for(own, pair=False)

        async def unix_resolve(dest: URL) -> SockAddr:
            return unix_lookup(dest)

        return DatagramEndpoint(sock, own, unix_lookup, unix_resolve, on_close=release)
    return DatagramEndpoint(sock, own, on_close=release)  # pragma: no cover


async def connect_datagram(url: URL, local_url: URL | None) -> DatagramEndpoint:
    if local_url is not None:
        raise InvalidURL(
            f"{url}: the inherited socket is already bound; local= cannot apply"
        )
    sock, release = _datagram_socket(url, "connect_datagram", connected=True)
    return DatagramEndpoint(sock, _own_url(sock, url, peer=True), on_close=release)


if sys.platform == "win32":  # pragma: no cover
    register(
        Scheme(
            "fd",
            unsupported="fd:// wraps POSIX file descriptors and exists only on "
            "POSIX; on Windows use tcp://, udp:// or pipe:///name",
        )
    )
else:
    register(
        Scheme(
            "fd",
            validate,
            connect=connect,
            listen=listen,
            open_datagram=open_datagram,
            connect_datagram=connect_datagram,
        )
    )

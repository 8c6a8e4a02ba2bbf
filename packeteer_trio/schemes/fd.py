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

This module is the scheme: its URL rules and verbs, and what a descriptor
is. The ledger of owned descriptors and their modes is :mod:`._fd_ledger`,
socket activation :mod:`._activation`.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Callable

from .._accept import MAX_BACKLOG
from .._endpoints import DatagramEndpoint, StreamEndpoint
from .._errors import InvalidURL, PacketeerError, SocketActivationError, with_url
from .._registry import Scheme, register
from .._sockinfo import socket_url
from .._url import URL
from ._activation import activated, claim, listen_fds
from ._fd_ledger import Release, access_mode, check_free, forget_all, release_all, take
from ._inet import configure_tcp, udp_addressing
from ._listener import SocketListenerEndpoint
from ._unix import AF_UNIX, unix_addressing

__all__ = ["listen_fds"]  # the public part: the rest is the scheme itself

# name -> (descriptor, the one direction it is used in)
STDIO = {"stdin": (0, "r"), "stdout": (1, "w"), "stderr": (2, "w")}
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
        return socket_url(sock, peer=peer)
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


# -- streams --------------------------------------------------------------------


async def connect(url: URL) -> StreamEndpoint:
    number, direction = _number(url, "connect")
    try:
        check_free(number, url)
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
            configure_tcp(sock)  # TCP_NODELAY, as every packeteer/trio stream
        release = take(fd)
    except BaseException:
        sock.detach()  # not ours after all: leave the descriptor open
        raise
    sock.setblocking(False)
    return StreamEndpoint(url=url, sock=sock, on_close=release)


def _pipe_stream(fd: int, direction: str | None, url: URL) -> StreamEndpoint:
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        raise InvalidURL(f"{url}: the descriptor is a directory, not a stream")
    mode = access_mode(fd)
    readable = mode in (os.O_RDONLY, os.O_RDWR) and direction != "w"
    writable = mode in (os.O_WRONLY, os.O_RDWR) and direction != "r"
    if not (readable or writable):
        opened = "writing" if mode == os.O_WRONLY else "reading"
        raise InvalidURL(f"{url}: the descriptor is open for {opened} only")
    # A two-way descriptor gets a second number for the writing side, so
    # that send_eof() and close each close their own.
    write_fd = os.dup(fd) if readable and writable else fd
    try:
        release = take(fd)
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
        fds = activated(url)
    else:
        number, direction = _number(url, "listen")
        if direction is not None:
            raise InvalidURL(
                f"{url}: {url.path[1:]} is not a listening socket; listen() takes "
                "fd:///N or fd://listen/NAME"
            )
        fds = [number]
    socks: list[socket.socket] = []
    releases: list[Release] = []
    try:
        for fd in fds:
            check_free(fd, url)
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
                sock.listen(MAX_BACKLOG if backlog is None else backlog)
        for sock in socks:
            releases.append(take(sock.fileno()))
    except BaseException as exc:
        release_all(releases)()
        for sock in socks:
            sock.detach()
        if isinstance(exc, OSError):
            raise _raise_with_url(exc, url, "listen") from exc
        raise
    if activation:
        claim(fds)
    for sock in socks:
        sock.setblocking(False)
    first = socks[0]
    return SocketListenerEndpoint(
        socks,
        _own_url(first, url),
        configure=configure_tcp if first.family in _INET else None,
        on_close=release_all(releases),
        on_detach=forget_all(releases),
    )


# -- datagrams --------------------------------------------------------------------


def _datagram_socket(
    url: URL, verb: str, *, connected: bool
) -> tuple[socket.socket, Callable[[], None]]:
    activation = url.host == "listen"
    if activation:
        fds = activated(url)
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
        check_free(fd, url)
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
        release = take(fd)
    except BaseException as exc:
        sock.detach()
        if isinstance(exc, OSError):
            raise _raise_with_url(exc, url, verb) from exc
        raise
    if activation:
        claim([fd])
    sock.setblocking(False)
    return sock, release


async def open_datagram(url: URL) -> DatagramEndpoint:
    sock, release = _datagram_socket(url, "open_datagram", connected=False)
    own = _own_url(sock, url)
    # Destinations are URLs of the socket's own kind: udp for IP, local for
    # AF_UNIX; the scheme modules already know how to turn those into
    # addresses.
    if sock.family in _INET:
        lookup, resolve = udp_addressing(own, sock.family)
        return DatagramEndpoint(sock, own, lookup, resolve, on_close=release)
    if sock.family == AF_UNIX:
        lookup, resolve = unix_addressing(own, pair=False)
        return DatagramEndpoint(sock, own, lookup, resolve, on_close=release)
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

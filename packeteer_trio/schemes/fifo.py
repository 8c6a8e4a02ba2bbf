"""fifo:// — POSIX named pipes.

``listen`` creates the FIFO (an existing FIFO is fine, any other file is an
error) and reads from it; ``connect`` opens an existing FIFO to write into it
(a reader must be there, or it is refused). Like packeteer, a FIFO is a
shared medium: several writers mix their bytes, and whoever reads first gets
them.

A FIFO has no connections, so the listener hands out one reader per
*session*: ``accept`` returns a receive-only stream at once, which sees end of
file when the last writer leaves; the next ``accept`` waits until that stream
is closed and then opens a fresh reader. ``serve`` thus handles writer
sessions one after another. From ``listen`` to the first ``accept`` the
listener holds the reader itself, so early writers are not refused; between
sessions with nobody accepting, writers get a broken pipe.

Files on disk: both ends check what they opened (``fstat``), so a path that
is or becomes anything but a FIFO is refused, never read from or written to;
``?mode=0600`` is set on the open descriptor (``fchmod``), never through a
path; on close the listener removes the FIFO only if it is still the one it
created. ``?nofollow`` refuses a path with a symbolic link in it (a directory
on the way, or the FIFO itself): OSError(ELOOP); see ``docs/security.md``.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

import anyio

from .._endpoints import ListenerEndpoint, StreamEndpoint, WaitFd
from .._errors import InvalidURL, UnsupportedScheme, with_url
from .._registry import Scheme, register
from .._url import URL
from ._paths import (
    FileIdentity,
    check_length,
    check_options,
    file_mode,
    identity,
    nofollow,
    refuse_symlinks,
    unlink_if_same,
)

# getattr: Windows has no O_NONBLOCK, and this module is imported there too.
_NONBLOCK_CLOEXEC = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | _NONBLOCK_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | _NONBLOCK_CLOEXEC
UNSUPPORTED_ON_WINDOWS = (
    "fifo:// (POSIX named pipes) does not exist on Windows; "
    "use pipe:///name (Windows named pipes) instead"
)


def validate(url: URL, text: str) -> URL:
    if url.host or url.port is not None:
        raise InvalidURL(
            f"{text!r}: fifo:// takes a path, not a host: fifo:///abs/path"
        )
    if url.path in ("", "/"):
        raise InvalidURL(f"{text!r}: fifo:// needs a path, e.g. fifo:///tmp/my.fifo")
    if "\0" in url.path:
        raise InvalidURL(f"{text!r}: a FIFO path cannot contain NUL")
    check_length(url.path, text)
    check_options(url, text)
    return url


def _require_fifo(url: URL, action: str) -> None:
    info = os.stat(url.path)
    if not stat.S_ISFIFO(info.st_mode):
        raise FileExistsError(
            errno.EEXIST,
            f"{url}: {action} failed: {url.path} exists and is not a FIFO",
        )


def _open_fifo(url: URL, flags: int, action: str) -> tuple[int, os.stat_result]:
    """Open the URL's FIFO; refuse (and close) whatever else the path holds.

    The check is on the descriptor, so a path swapped for another file after
    an earlier check is still refused, before a byte is read or written.
    """
    if nofollow(url):
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(url.path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISFIFO(info.st_mode):
            raise FileExistsError(
                errno.EEXIST,
                f"{url}: {action} failed: {url.path} exists and is not a FIFO",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _unlink_if_same(path: str, made: FileIdentity) -> None:
    """Remove *path* only if it is still the FIFO we made."""
    try:
        unlink_if_same(path, made)
    except OSError:
        pass


async def connect(url: URL) -> StreamEndpoint:
    try:
        refuse_symlinks(url, url.path, final=True)
        _require_fifo(url, "connect")
        fd, _ = _open_fifo(url, _WRITE_FLAGS, "connect")
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader: nobody listens
            raise ConnectionRefusedError(
                errno.ECONNREFUSED,
                f"{url}: connect failed: no reader has the FIFO open (is anything "
                "listening?)",
            ) from exc
        if exc.strerror and str(url) in exc.strerror:
            raise
        raise with_url(exc, url, "connect") from exc
    return StreamEndpoint(url=url, write_fd=fd)


class FifoListenerEndpoint(ListenerEndpoint):
    def __init__(self, url: URL, created: bool, mode: int | None = None) -> None:
        self.url = url
        self._created = created
        self._closed = False
        self._in_session = False
        self._idle: anyio.Event | None = None
        fd, info = _open_fifo(url, _READ_FLAGS, "listen")
        self._identity = identity(info)
        if created and mode is not None and sys.platform != "win32":
            try:
                os.fchmod(fd, mode)  # through the descriptor: no path to swap
            except BaseException:
                os.close(fd)
                raise
        self._reader: int | None = fd

    def fds(self) -> list[int]:
        return [] if self._reader is None else [self._reader]

    def try_accept(self) -> StreamEndpoint | None:
        if self._in_session or self._closed:
            return None
        fd = self._reader
        if fd is None:
            fd = self._reopen()
        self._reader = None
        self._in_session = True
        return StreamEndpoint(
            url=self.url, read_fd=fd, eof_needs_hangup=True, on_close=self._session_over
        )

    def _reopen(self) -> int:
        """A fresh reader for the next session, of the very FIFO we listen on."""
        try:
            fd, info = _open_fifo(self.url, _READ_FLAGS, "accept")
        except OSError as exc:
            if exc.strerror and str(self.url) in exc.strerror:
                raise
            raise with_url(exc, self.url, "accept") from exc
        if identity(info) != self._identity:
            os.close(fd)
            raise FileExistsError(
                errno.EEXIST,
                f"{self.url}: accept failed: {self.url.path} was replaced by "
                "another FIFO since listen()",
            )
        return fd

    async def wait_acceptable(self, wait_readable: WaitFd) -> None:
        if not self._in_session or self._closed:
            return
        self._idle = anyio.Event()
        await self._idle.wait()

    def _session_over(self) -> None:
        # The next reader is opened by the next accept(), not here: until
        # someone accepts again, writers rightly see a broken pipe.
        self._in_session = False
        if self._idle is not None:
            self._idle.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None
        if self._idle is not None:
            self._idle.set()
        if self._created:
            _unlink_if_same(self.url.path, self._identity)


async def listen(url: URL, backlog: int | None) -> FifoListenerEndpoint:
    if sys.platform == "win32":  # pragma: no cover - never registered there
        raise UnsupportedScheme(f"{url}: {UNSUPPORTED_ON_WINDOWS}")
    mode = file_mode(url)
    made: FileIdentity | None = None
    try:
        refuse_symlinks(url, url.path, final=True)
        try:
            # Under the umask the FIFO is never more open than *mode*; the
            # listener then sets *mode* exactly through its descriptor.
            os.mkfifo(url.path, 0o666 if mode is None else mode)
            info = os.lstat(url.path)
            made = identity(info)
        except FileExistsError:
            _require_fifo(url, "listen")
        return FifoListenerEndpoint(url, made is not None, mode)
    except OSError as exc:
        if made is not None:
            _unlink_if_same(url.path, made)
        if exc.strerror and str(url) in exc.strerror:
            raise
        raise with_url(exc, url, "listen") from exc


def scheme_for(platform: str) -> Scheme:
    """The fifo scheme as registered on *platform* (a ``sys.platform`` value)."""
    if platform == "win32":
        return Scheme("fifo", unsupported=UNSUPPORTED_ON_WINDOWS)
    return Scheme("fifo", validate, connect=connect, listen=listen)


register(scheme_for(sys.platform))

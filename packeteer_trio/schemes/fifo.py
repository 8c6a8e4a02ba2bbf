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
"""

from __future__ import annotations

import errno
import os
import stat
import sys

import anyio

from .._endpoints import ListenerEndpoint, StreamEndpoint, WaitFd
from .._errors import InvalidURL, with_url
from .._registry import Scheme, register
from .._url import URL

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
    mode = url.query.get("mode")
    if mode is not None:
        try:
            value = int(mode, 8)
        except ValueError:
            value = -1
        if not 0 <= value <= 0o777:
            raise InvalidURL(f"{text!r}: mode={mode!r} is not an octal mode like 0600")
    return url


def _require_fifo(url: URL, action: str) -> None:
    info = os.stat(url.path)
    if not stat.S_ISFIFO(info.st_mode):
        raise FileExistsError(
            errno.EEXIST,
            f"{url}: {action} failed: {url.path} exists and is not a FIFO",
        )


async def connect(url: URL) -> StreamEndpoint:
    try:
        _require_fifo(url, "connect")
        fd = os.open(url.path, _WRITE_FLAGS)
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
    def __init__(self, url: URL, created: bool) -> None:
        self.url = url
        self._created = created
        self._closed = False
        self._in_session = False
        self._idle: anyio.Event | None = None
        self._reader: int | None = os.open(url.path, _READ_FLAGS)

    def fds(self) -> list[int]:
        return [] if self._reader is None else [self._reader]

    def try_accept(self) -> StreamEndpoint | None:
        if self._in_session or self._closed:
            return None
        fd = self._reader
        if fd is None:
            fd = os.open(self.url.path, _READ_FLAGS)
        self._reader = None
        self._in_session = True
        return StreamEndpoint(
            url=self.url, read_fd=fd, eof_needs_hangup=True, on_close=self._session_over
        )

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
            try:
                os.unlink(self.url.path)
            except OSError:
                pass


async def listen(url: URL, backlog: int | None) -> FifoListenerEndpoint:
    if sys.platform == "win32":  # pragma: no cover - never registered there
        raise NotImplementedError("fifo:// does not exist on Windows")
    mode = url.query.get("mode")
    created = False
    try:
        try:
            os.mkfifo(url.path, 0o666 if mode is None else int(mode, 8))
            created = True
            if mode is not None:
                os.chmod(url.path, int(mode, 8))
        except FileExistsError:
            _require_fifo(url, "listen")
        return FifoListenerEndpoint(url, created)
    except OSError as exc:
        if created:
            os.unlink(url.path)
        if exc.strerror and str(url) in exc.strerror:
            raise
        raise with_url(exc, url, "listen") from exc


def scheme_for(platform: str) -> Scheme:
    """The fifo scheme as registered on *platform* (a ``sys.platform`` value)."""
    if platform == "win32":
        return Scheme("fifo", unsupported=UNSUPPORTED_ON_WINDOWS)
    return Scheme("fifo", validate, connect=connect, listen=listen)


register(scheme_for(sys.platform))

r"""pipe:// and anon:// on Windows: named pipes on trio's IOCP (Windows only).

Loaded on first use by :mod:`.pipe` (never on POSIX; importing it there raises
ImportError). The Win32 calls and the overlapped waits are in :mod:`.._win32`,
the stream class in :mod:`.._trio._stream_windows`.

``listen("pipe:///name")`` creates the first instance of ``\\.\pipe\name``
with ``FILE_FLAG_FIRST_PIPE_INSTANCE`` (so a name someone else holds is an
``OSError(EADDRINUSE)``, never silently shared) and keeps one *spare* instance
listening at all times: ``accept`` waits in ``ConnectNamedPipe`` on the spare
through trio's IOCP, and as soon as a client is connected the next spare is
created before the connected one is handed out. Every instance is overlapped,
``PIPE_REJECT_REMOTE_CLIENTS`` (local machine only), of message type and
read in message mode: the stream is still a byte stream, but a zero-length
message can mark a half-close (see :mod:`.._trio._stream_windows`).
Instances get the default security descriptor: full control for the
creator, SYSTEM and administrators, read access for everyone else (so
another local user can connect for reading only). ``backlog`` is ignored:
clients beyond the one spare instance wait in ``connect`` (below) until the
next ``accept``.

``connect("pipe:///name")`` opens the client end with ``CreateFileW``. When
every instance is busy (``ERROR_PIPE_BUSY``) it waits in ``WaitNamedPipeW``
in a worker thread, at most ``WAIT_SLICE_MS`` per call, and tries again, in a
loop that ends only on success, another error, or cancellation. Why a thread
and not a polling loop with ``trio.sleep`` (as asyncio and go-winio do): the
kernel wakes ``WaitNamedPipeW`` the moment an instance becomes free, so a
waiting client connects at once rather than at its next poll, and wakes only
every 100 ms meanwhile; cancellation is immediate (``abandon_on_cancel=True``) and
leaves at most one thread finishing its current slice of at most 100 ms,
holding nothing but the name. The first attempt needs no thread at all.

``anon://`` is, as in packeteer, a named pipe with a generated unique name:
one outbound instance (``FILE_FLAG_FIRST_PIPE_INSTANCE``, one instance at
most) and our own client end. The name holds a random token, and nobody can
get between the two ends unnoticed: a name someone already holds fails the
first-instance flag, and a stranger connecting first would leave our own
``CreateFileW`` with ``ERROR_PIPE_BUSY`` (there is only the one instance).
"""

# ruff: noqa: E402  (imports follow the Windows-only guard on purpose)
from __future__ import annotations

import errno
import itertools
import os
import secrets
import sys

if sys.platform != "win32":  # pragma: no cover - this is the POSIX case
    raise ImportError("packeteer_trio.schemes._pipe_windows is for Windows only")
assert sys.platform == "win32"  # for mypy: the rest is checked on win32 only

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

import packeteer_trio._win32 as _win32

from .._endpoints import ListenerEndpoint, StreamEndpoint, WaitFd
from .._errors import PacketeerError
from .._url import URL
from .._winerror import ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY, ERROR_SEM_TIMEOUT
from ._pipe_names import (
    anon_pipe_name,
    pipe_error,
    windows_name,
)

WAIT_SLICE_MS = 100
_SERVER_PIPE_MODE = (
    _win32.PIPE_TYPE_MESSAGE
    | _win32.PIPE_READMODE_MESSAGE
    | _win32.PIPE_WAIT
    | _win32.PIPE_REJECT_REMOTE_CLIENTS
)
_ANON_PIPE_MODE = (
    _win32.PIPE_TYPE_BYTE
    | _win32.PIPE_READMODE_BYTE
    | _win32.PIPE_WAIT
    | _win32.PIPE_REJECT_REMOTE_CLIENTS
)
_anon_serial = itertools.count(1)


def _require_trio(url: URL) -> None:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        raise PacketeerError(
            f"{url}: Windows pipes are awaited on trio's I/O completion port; "
            "open them from trio code (the anyio layer does not have them yet)"
        ) from None


def _stream_url(url: URL) -> URL:
    return url.replace(query={}, fragment="")


def _new_instance(name: str, url: URL, *, first: bool) -> int:
    """One more listening instance of the pipe, registered with trio's IOCP."""
    open_mode = _win32.PIPE_ACCESS_DUPLEX
    if first:
        open_mode |= _win32.FILE_FLAG_FIRST_PIPE_INSTANCE
    try:
        handle = _win32.create_named_pipe(
            name, open_mode, _SERVER_PIPE_MODE, _win32.PIPE_UNLIMITED_INSTANCES
        )
    except _win32.WinError as exc:
        action = "listen" if first else "accept"
        raise pipe_error(exc.code, exc.strerror or "", url, action) from exc
    try:
        _win32.register(handle)
    except BaseException:
        _win32.close_handle(handle)
        raise
    return handle


# -- connect --------------------------------------------------------------------


async def connect(url: URL) -> StreamEndpoint:
    _require_trio(url)
    name = windows_name(url)
    await checkpoint_if_cancelled()
    waited = False
    while True:
        try:
            handle = _win32.open_pipe(name, _win32.GENERIC_READ | _win32.GENERIC_WRITE)
            break
        except _win32.WinError as exc:
            if exc.code != ERROR_PIPE_BUSY:
                raise pipe_error(exc.code, exc.strerror or "", url, "connect") from exc
        # Every instance is taken: wait until the server offers another.
        code = await trio.to_thread.run_sync(
            _win32.wait_named_pipe, name, WAIT_SLICE_MS, abandon_on_cancel=True
        )
        waited = True
        if code not in (0, ERROR_SEM_TIMEOUT, ERROR_FILE_NOT_FOUND):
            await trio.sleep(0.01)  # an unexpected answer: never spin on it
    try:
        if _win32.is_message_pipe(handle):
            # Ours are; read whole messages so that an empty one is our EOF.
            _win32.set_message_read_mode(handle)
        _win32.register(handle)
    except BaseException as exc:
        _win32.close_handle(handle)
        if isinstance(exc, _win32.WinError):
            raise pipe_error(exc.code, exc.strerror or "", url, "connect") from exc
        raise
    if not waited:
        await cancel_shielded_checkpoint()
    return StreamEndpoint(url=_stream_url(url), read_handle=handle, write_handle=handle)


# -- listen ---------------------------------------------------------------------


class PipeListenerEndpoint(ListenerEndpoint):
    """The instances of one pipe name: one spare listening, connected ones
    waiting to be accepted (a client that came before ``accept`` was called)."""

    def __init__(self, url: URL, name: str, first: int) -> None:
        self.url = url
        self._name = name
        self._spare: _win32.OwnedHandle | None = _win32.OwnedHandle(first)
        self._ready: list[int] = []
        self._closed = False

    def fds(self) -> list[int]:
        return []  # handles, not descriptors: close() itself wakes an accept

    def try_accept(self) -> StreamEndpoint | None:
        if self._closed or not self._ready:
            return None
        handle = self._ready.pop(0)
        return StreamEndpoint(url=self.url, read_handle=handle, write_handle=handle)

    async def wait_acceptable(self, wait_readable: WaitFd) -> None:
        # wait_readable is for descriptors; here ConnectNamedPipe is the wait.
        if self._closed or self._ready:
            return
        spare = self._spare
        if spare is None:  # making the last one failed; try (and report) again
            spare = self._spare = _win32.OwnedHandle(
                _new_instance(self._name, self.url, first=False)
            )
        try:
            connected = await _win32.connect_named_pipe(spare)
        except OSError as exc:
            if self._closed:
                return  # close() aborted the wait; the Listener says so
            self._spare = None
            spare.close()
            raise pipe_error(
                exc.winerror or 0, exc.strerror or str(exc), self.url, "accept"
            ) from exc
        if self._closed:
            return  # close() got here first and closes the instance
        self._spare = None
        if connected:
            self._ready.append(spare.detach())
        else:
            spare.close()  # the client left already: this instance is spent
        try:
            # Before anyone gets the connected instance, so the name never
            # lacks a listening instance while we are accepting.
            self._spare = _win32.OwnedHandle(
                _new_instance(self._name, self.url, first=False)
            )
        except OSError:
            pass  # the next wait_acceptable() tries again and reports it

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ready, self._ready = self._ready, []
        for handle in ready:  # connected, never accepted: the client sees EOF
            _win32.close_handle(handle)
        if self._spare is not None:
            spare, self._spare = self._spare, None
            spare.close()  # cancels a pending ConnectNamedPipe first


async def listen(url: URL, backlog: int | None) -> PipeListenerEndpoint:
    _require_trio(url)
    await checkpoint_if_cancelled()
    name = windows_name(url)
    endpoint = PipeListenerEndpoint(
        _stream_url(url), name, _new_instance(name, url, first=True)
    )
    await cancel_shielded_checkpoint()
    return endpoint


# -- anon -------------------------------------------------------------------------


async def connect_anon(url: URL) -> StreamEndpoint:
    """A self-pipe: what is written to the stream is read back from it."""
    _require_trio(url)
    await checkpoint_if_cancelled()
    name = anon_pipe_name(os.getpid(), next(_anon_serial), secrets.token_hex(8))
    handles: list[int] = []
    try:
        server = _win32.create_named_pipe(
            name,
            _win32.PIPE_ACCESS_OUTBOUND | _win32.FILE_FLAG_FIRST_PIPE_INSTANCE,
            _ANON_PIPE_MODE,
            1,
        )
        handles.append(server)
        try:
            client = _win32.open_pipe(name, _win32.GENERIC_READ)
        except _win32.WinError as exc:
            if exc.code != ERROR_PIPE_BUSY:
                raise
            raise PermissionError(
                errno.EACCES,
                f"{url}: connect failed: another process connected to the new "
                "anonymous pipe first",
            ) from exc
        handles.append(client)
        _win32.register(server)
        _win32.register(client)
    except BaseException as exc:
        for handle in handles:
            _win32.close_handle(handle)
        if isinstance(exc, _win32.WinError):
            raise pipe_error(exc.code, exc.strerror or "", url, "connect") from exc
        raise
    await cancel_shielded_checkpoint()
    return StreamEndpoint(url=url, read_handle=client, write_handle=server)

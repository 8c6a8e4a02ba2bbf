"""Win32 for named pipes, on trio's I/O completion port (Windows only).

Imported only on Windows, by :mod:`.schemes._pipe_windows` and
:mod:`._stream_windows`; importing it elsewhere raises ImportError.

Win32 calls go through :mod:`ctypes` with explicit ``argtypes``/``restype``
(no new dependency). Waiting goes through trio's IOCP: every handle is
associated with trio's completion port (``trio.lowlevel.register_with_iocp``)
and each overlapped operation is awaited with ``trio.lowlevel.wait_overlapped``
(reads, ``ConnectNamedPipe``) or ``trio.lowlevel.write_overlapped`` (writes).

Cancellation — verified in trio 0.35's ``_core/_io_windows.py``: the abort
function of ``wait_overlapped`` calls ``CancelIoEx(handle, lpOverlapped)`` and
returns ``Abort.FAILED``, so a cancelled task stays blocked until the
operation's completion packet arrives. If the cancel won, the completion says
``ERROR_OPERATION_ABORTED`` and trio raises ``Cancelled``; if the operation
had already completed, the result is returned normally and the cancellation
is delivered at the next checkpoint — bytes read are never dropped. Either
way the OVERLAPPED and the buffer stay alive until the kernel is done with
them: ``write_overlapped`` holds ``ffi.from_buffer(data)`` open across the
wait, and :func:`read_into` holds a ctypes view of the caller's buffer (which
also locks a bytearray against resizing). Completions for an operation whose
handle was closed come back as ``ERROR_OPERATION_ABORTED`` without a cancel
request, which trio turns into ``trio.ClosedResourceError``.

Our own OVERLAPPED structs are allocated with trio's cffi instance, exactly
as ``_perform_overlapped`` does: if ``CancelIoEx`` comes too late, trio posts
a marker packet and keeps *that object* referenced until the marker is
processed, so its address cannot be reused by a new operation in between.
(A ctypes OVERLAPPED passed as an int would not be kept alive that way.)
"""

# ruff: noqa: E402  (imports follow the Windows-only guard on purpose)
from __future__ import annotations

import sys

if sys.platform != "win32":  # pragma: no cover - this is the POSIX case
    raise ImportError("packeteer_trio._win32 is for Windows only")
assert sys.platform == "win32"  # for mypy: the rest is checked on win32 only

import ctypes
from ctypes import wintypes
from typing import Any

import trio
from trio.lowlevel import cancel_shielded_checkpoint, wait_overlapped

from ._trio_ffi import trio_ffi
from .schemes.pipe import (
    ERROR_IO_PENDING,
    ERROR_MORE_DATA,
    ERROR_NO_DATA,
    ERROR_NOT_FOUND,
    ERROR_PIPE_CONNECTED,
)

# -- constants (winbase.h, winnt.h, fileapi.h) --------------------------------

GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
OPEN_EXISTING = 3
FILE_FLAG_OVERLAPPED = 0x40000000
FILE_FLAG_FIRST_PIPE_INSTANCE = 0x00080000
SECURITY_SQOS_PRESENT = 0x00100000
SECURITY_IDENTIFICATION = 0x00010000  # SecurityIdentification << 16
PIPE_ACCESS_INBOUND = 0x1
PIPE_ACCESS_OUTBOUND = 0x2
PIPE_ACCESS_DUPLEX = 0x3
PIPE_TYPE_BYTE = 0x0
PIPE_TYPE_MESSAGE = 0x4
PIPE_READMODE_BYTE = 0x0
PIPE_READMODE_MESSAGE = 0x2
PIPE_WAIT = 0x0
PIPE_REJECT_REMOTE_CLIENTS = 0x8
PIPE_UNLIMITED_INSTANCES = 255
PIPE_BUFFER_SIZE = 65536
MAX_IO = 1 << 30  # lengths are DWORDs: one ReadFile/WriteFile moves at most this
INVALID_HANDLE_VALUE: int = ctypes.c_void_p(-1).value or 0

_trio_ffi = trio_ffi()  # trio's cffi instance (a private name: see _trio_ffi)

# -- kernel32 through ctypes ----------------------------------------------------

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)


def _bind(name: str, restype: Any, *argtypes: Any) -> Any:
    function = getattr(_kernel32, name)
    function.restype = restype
    function.argtypes = argtypes
    return function


_DWORD, _HANDLE, _BOOL = wintypes.DWORD, wintypes.HANDLE, wintypes.BOOL
_LPDWORD, _LPVOID, _LPCWSTR = wintypes.LPDWORD, wintypes.LPVOID, wintypes.LPCWSTR

_CreateNamedPipeW = _bind(
    "CreateNamedPipeW",
    _HANDLE,
    _LPCWSTR,  # lpName
    _DWORD,  # dwOpenMode
    _DWORD,  # dwPipeMode
    _DWORD,  # nMaxInstances
    _DWORD,  # nOutBufferSize
    _DWORD,  # nInBufferSize
    _DWORD,  # nDefaultTimeOut
    _LPVOID,  # lpSecurityAttributes
)
_CreateFileW = _bind(
    "CreateFileW",
    _HANDLE,
    _LPCWSTR,  # lpFileName
    _DWORD,  # dwDesiredAccess
    _DWORD,  # dwShareMode
    _LPVOID,  # lpSecurityAttributes
    _DWORD,  # dwCreationDisposition
    _DWORD,  # dwFlagsAndAttributes
    _HANDLE,  # hTemplateFile
)
_ConnectNamedPipe = _bind("ConnectNamedPipe", _BOOL, _HANDLE, _LPVOID)
_WaitNamedPipeW = _bind("WaitNamedPipeW", _BOOL, _LPCWSTR, _DWORD)
_ReadFile = _bind("ReadFile", _BOOL, _HANDLE, _LPVOID, _DWORD, _LPDWORD, _LPVOID)
_CancelIoEx = _bind("CancelIoEx", _BOOL, _HANDLE, _LPVOID)
_CloseHandle = _bind("CloseHandle", _BOOL, _HANDLE)
_GetNamedPipeInfo = _bind(
    "GetNamedPipeInfo", _BOOL, _HANDLE, _LPDWORD, _LPDWORD, _LPDWORD, _LPDWORD
)
_SetNamedPipeHandleState = _bind(
    "SetNamedPipeHandleState", _BOOL, _HANDLE, _LPDWORD, _LPDWORD, _LPDWORD
)


class WinError(OSError):
    """Raised by the helpers below: ``winerror`` is the Win32 code.

    Callers translate it with :func:`.schemes.pipe.pipe_error` (connect,
    listen) or into trio's stream exceptions.
    """

    def __init__(self, code: int) -> None:
        super().__init__(0, ctypes.FormatError(code).strip(), None, code)
        self.code = code


def last_error() -> WinError:
    return WinError(ctypes.get_last_error())


def _as_handle(value: Any) -> int | None:
    """A HANDLE result as an int, or None for NULL / INVALID_HANDLE_VALUE."""
    if value is None or value == INVALID_HANDLE_VALUE:
        return None
    return int(value)


# -- plain (non-overlapped) calls ------------------------------------------------


def create_named_pipe(
    name: str, open_mode: int, pipe_mode: int, max_instances: int
) -> int:
    """``CreateNamedPipeW`` with our buffer sizes and the default security."""
    handle = _as_handle(
        _CreateNamedPipeW(
            name,
            open_mode | FILE_FLAG_OVERLAPPED,
            pipe_mode,
            max_instances,
            PIPE_BUFFER_SIZE,
            PIPE_BUFFER_SIZE,
            0,  # nDefaultTimeOut: 50 ms, only for WaitNamedPipe(…DEFAULT_WAIT)
            None,
        )
    )
    if handle is None:
        raise last_error()
    return handle


def open_pipe(name: str, access: int) -> int:
    """``CreateFileW`` on a pipe name: the client end, overlapped.

    SECURITY_IDENTIFICATION: the server may learn who we are, but never act
    as us (impersonation), whatever pipe answers to the name.
    """
    handle = _as_handle(
        _CreateFileW(
            name,
            access,
            0,
            None,
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
            None,
        )
    )
    if handle is None:
        raise last_error()
    return handle


def wait_named_pipe(name: str, timeout_ms: int) -> int:
    """``WaitNamedPipeW``: 0 once an instance is free, else the Win32 error.

    Blocking: run it in a worker thread (see ``_pipe_windows.connect``).
    """
    if _WaitNamedPipeW(name, timeout_ms):
        return 0
    return ctypes.get_last_error()


def is_message_pipe(handle: int) -> bool:
    """Whether the pipe is of message type (``GetNamedPipeInfo``)."""
    flags = wintypes.DWORD(0)
    if not _GetNamedPipeInfo(handle, ctypes.byref(flags), None, None, None):
        raise last_error()
    return bool(flags.value & PIPE_TYPE_MESSAGE)


def set_message_read_mode(handle: int) -> None:
    mode = wintypes.DWORD(PIPE_READMODE_MESSAGE | PIPE_WAIT)
    if not _SetNamedPipeHandleState(handle, ctypes.byref(mode), None, None):
        raise last_error()


def cancel_io(handle: int) -> None:
    """``CancelIoEx(handle, NULL)``: abort every pending operation on it."""
    if not _CancelIoEx(handle, None):
        code = ctypes.get_last_error()
        if code != ERROR_NOT_FOUND:  # nothing pending is the usual case
            raise WinError(code)


def close_handle(handle: int) -> None:
    if not _CloseHandle(handle):
        raise last_error()


class OwnedHandle:
    """A HANDLE with its pending overlapped operations counted.

    ``close()`` never closes the handle under a pending operation: it cancels
    them all (``CancelIoEx``) and the last one to finish closes the handle.
    Closing earlier would let trio's abort function call ``CancelIoEx`` on a
    dead (or reused) handle value, which trio reports as a TrioInternalError.
    Like trio's ``_HandleHolder``, ``handle`` is -1 once really closed.
    """

    __slots__ = ("_busy", "closing", "handle")

    def __init__(self, handle: int) -> None:
        self.handle = handle
        self.closing = False
        self._busy = 0

    def begin(self) -> int:
        """Count one operation in; the caller checked ``closing`` already."""
        self._busy += 1
        return self.handle

    def end(self) -> None:
        self._busy -= 1
        if self.closing and not self._busy:
            self._really_close()

    def detach(self) -> int:
        """Give up ownership (no operation may be pending): the raw handle."""
        assert not self._busy
        handle, self.handle = self.handle, -1
        self.closing = True
        return handle

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self._busy:
            cancel_io(self.handle)  # the last end() closes it
        else:
            self._really_close()

    def _really_close(self) -> None:
        if self.handle != -1:
            handle, self.handle = self.handle, -1
            close_handle(handle)

    def __del__(self) -> None:
        if self.handle != -1 and not self._busy:
            try:
                self._really_close()
            except OSError:  # pragma: no cover
                pass


# -- overlapped operations through trio's IOCP ---------------------------------


def _new_overlapped() -> tuple[Any, int]:
    """A zeroed OVERLAPPED owned by trio's cffi, and its address for ctypes."""
    overlapped = _trio_ffi.new("LPOVERLAPPED")
    return overlapped, int(_trio_ffi.cast("uintptr_t", overlapped))


async def read_into(owned: OwnedHandle, view: memoryview) -> int:
    """One overlapped ``ReadFile`` into *view*; the byte count (0 on a pipe: the
    peer wrote a zero-length message).

    Our own call rather than ``trio.lowlevel.readinto_overlapped`` because a
    message-mode read into a smaller buffer ends in ``ERROR_MORE_DATA`` (the
    rest of the message comes with the next read): trio would raise and lose
    the count, and when ReadFile reports it synchronously trio would not wait
    for the completion packet that is still queued (as CPython's
    ``overlapped.c`` documents by waiting for it). Here both cases return the
    bytes read. A synchronous failure (``ERROR_BROKEN_PIPE`` …) queues no
    packet and is raised at once, without waiting.
    """
    overlapped, address = _new_overlapped()
    length = min(len(view), MAX_IO)
    buffer = (ctypes.c_char * length).from_buffer(view)  # pins the memory
    handle = owned.begin()
    try:
        if not _ReadFile(handle, buffer, length, None, address):
            code = ctypes.get_last_error()
            if code not in (ERROR_IO_PENDING, ERROR_MORE_DATA):
                raise WinError(code)
        try:
            await wait_overlapped(handle, overlapped)
        except OSError as exc:
            if exc.winerror != ERROR_MORE_DATA:
                raise
        return int(overlapped.InternalHigh)
    finally:
        owned.end()
        del buffer


async def wait_for_data(owned: OwnedHandle, *, message_mode: bool) -> bool:
    """Wait until the pipe has something to read, reading nothing: one
    overlapped zero-byte ``ReadFile`` (libuv's "zero read", with which it
    watches its pipes on Windows) completes once data is there.

    True when data is waiting. On a pipe read in message mode a waiting
    message is ``ERROR_MORE_DATA`` and stays queued, but a zero-length
    message (our end of file) is consumed by the zero-byte read: then the
    answer is False and the caller must remember the end of file. Raises
    WinError (``ERROR_BROKEN_PIPE`` once the peer has closed and everything
    was read). A checkpoint when it waits; cancellation as for reads.
    """
    overlapped, address = _new_overlapped()
    buffer = ctypes.create_string_buffer(1)
    handle = owned.begin()
    try:
        if not _ReadFile(handle, buffer, 0, None, address):
            code = ctypes.get_last_error()
            if code not in (ERROR_IO_PENDING, ERROR_MORE_DATA):
                raise WinError(code)
        try:
            await wait_overlapped(handle, overlapped)
        except OSError as exc:
            if exc.winerror != ERROR_MORE_DATA:
                raise
            return True
        return not message_mode
    finally:
        owned.end()
        del buffer


async def write_all(owned: OwnedHandle, view: memoryview) -> None:
    """Write all of *view* with ``trio.lowlevel.write_overlapped``.

    An overlapped write to a blocking-mode pipe completes only when all of it
    is in the pipe, so one call normally does (the loop is for safety, and
    for writes over MAX_IO). An empty *view* writes a zero-length message
    (our end of file), once.
    """
    handle = owned.begin()
    try:
        sent = await trio.lowlevel.write_overlapped(handle, view[:MAX_IO])
        while sent < len(view):
            chunk = view[sent : sent + MAX_IO]
            sent += await trio.lowlevel.write_overlapped(handle, chunk)
    finally:
        owned.end()


async def connect_named_pipe(owned: OwnedHandle) -> bool:
    """Wait in ``ConnectNamedPipe`` for a client on a listening instance.

    True once a client is connected; False if one connected and left before
    we looked (``ERROR_NO_DATA``): that instance must be replaced. A
    cancelled wait leaves the instance listening, ready for the next call.
    Always a checkpoint.
    """
    overlapped, address = _new_overlapped()
    handle = owned.begin()
    try:
        if not _ConnectNamedPipe(handle, address):
            code = ctypes.get_last_error()
            if code in (ERROR_PIPE_CONNECTED, ERROR_NO_DATA):
                # Done synchronously and no completion packet is queued.
                await cancel_shielded_checkpoint()
                return code == ERROR_PIPE_CONNECTED
            if code != ERROR_IO_PENDING:
                raise WinError(code)
        # Pending, or (a success reported at once) completed with a packet.
        try:
            await wait_overlapped(handle, overlapped)
        except OSError as exc:
            if exc.winerror == ERROR_NO_DATA:
                return False
            raise
        return True
    finally:
        owned.end()


def register(handle: int) -> None:
    """Associate *handle* with trio's completion port (once per handle)."""
    trio.lowlevel.register_with_iocp(handle)

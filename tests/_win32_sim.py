"""A simulated Windows kernel for running the Windows pipe code on POSIX.

:func:`load` imports the real ``packeteer_trio._win32``,
``packeteer_trio._trio._stream_windows`` and ``packeteer_trio.schemes._pipe_windows``
with kernel32 (through ``ctypes.WinDLL``) and trio's IOCP functions
(``wait_overlapped``, ``write_overlapped``, ``register_with_iocp``) replaced by
this model, so every line of those modules runs on Linux CI.

What it shows: the Python logic (stream states, half-close, the listener's
spare instance, deferred closing, cancellation) is right *against this model*
of named pipes and of trio's IOCP, written from Microsoft's documentation and
trio 0.35's ``_io_windows.py``. What it cannot show: that Windows behaves like
the model, or that the ctypes signatures are right. Those need a Windows run
(``docs/platforms.md``).

The model is strict where the real thing would hang or crash: waiting for a
completion that was never queued, leaving a queued completion unconsumed,
closing a handle with operations pending, using a handle that was never
associated with the completion port or opened without FILE_FLAG_OVERLAPPED,
and handles left open are all recorded in ``Kernel.violations`` /
``Kernel.open_handles()``.
"""

from __future__ import annotations

import ctypes
import importlib
import sys
import threading
import time
from collections import deque
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.lowlevel

# Win32 values (the same numbers as packeteer_trio.schemes.pipe / _win32)
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_INVALID_PARAMETER = 87
ERROR_BROKEN_PIPE = 109
ERROR_SEM_TIMEOUT = 121
ERROR_PIPE_BUSY = 231
ERROR_NO_DATA = 232
ERROR_MORE_DATA = 234
ERROR_PIPE_CONNECTED = 535
ERROR_OPERATION_ABORTED = 995
ERROR_IO_PENDING = 997
ERROR_NOT_FOUND = 1168
FILE_FLAG_OVERLAPPED = 0x40000000
FILE_FLAG_FIRST_PIPE_INSTANCE = 0x00080000
PIPE_TYPE_MESSAGE = 0x4
PIPE_READMODE_MESSAGE = 0x2
PIPE_ACCESS_INBOUND = 0x1
PIPE_ACCESS_OUTBOUND = 0x2
GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value

MODULES = (
    "packeteer_trio._win32",
    "packeteer_trio._trio._stream_windows",
    "packeteer_trio.schemes._pipe_windows",
)


class PipeName:
    def __init__(self, name: str, message_type: bool, max_instances: int) -> None:
        self.name = name
        self.message_type = message_type
        self.max_instances = max_instances
        self.instances: list[Instance] = []


class Instance:
    def __init__(self, pipe: PipeName, access: int, message_read: bool) -> None:
        self.pipe = pipe
        self.state = "listening"  # → "connected"
        self.server = End(self, server=True, message_read=message_read)
        self.server.can_read = bool(access & PIPE_ACCESS_INBOUND)
        self.server.can_write = bool(access & PIPE_ACCESS_OUTBOUND)
        self.client: End | None = None
        self.connect_op: Op | None = None


class End:
    def __init__(self, instance: Instance, server: bool, message_read: bool) -> None:
        self.instance = instance
        self.server = server
        self.message_read = message_read
        self.inbound: deque[bytes] = deque()
        self.closed = False
        self.registered = False
        self.can_read = self.can_write = True
        self.reads: list[Op] = []

    @property
    def peer(self) -> End | None:
        return self.instance.client if self.server else self.instance.server

    def peer_gone(self) -> bool:
        peer = self.peer
        return self.instance.state == "connected" and (peer is None or peer.closed)


class Op:
    def __init__(self, end: End, address: int, buffer: Any = None, length: int = 0):
        self.end = end
        self.address = address
        self.buffer = buffer
        self.length = length
        self.done = False
        self.status = 0
        self.transferred = 0
        self.waiter: Any = None


class _Function:
    """Stands in for a ctypes function: takes restype/argtypes, then calls."""

    def __init__(self, function: Any) -> None:
        self.function = function
        self.restype: Any = None
        self.argtypes: Any = None

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


class _Dll:
    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def __getattr__(self, name: str) -> _Function:
        function = _Function(getattr(self._kernel, "k_" + name))
        setattr(self, name, function)
        return function


class Kernel:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.handles: dict[int, End] = {}
        self.pipes: dict[str, PipeName] = {}
        self.ops: dict[int, Op] = {}
        self.violations: list[str] = []
        self.token: trio.lowlevel.TrioToken | None = None
        self._next_handle = 0x100
        self._errors = threading.local()
        self.dll = _Dll(self)
        self.error_class: type[OSError] = OSError
        # Set to 0 to have a stranger connect to the next anon:// pipe right
        # after it is created, before our own client end can; then its handle.
        self.intruder: int | None = None

    # -- bookkeeping ------------------------------------------------------------

    def get_last_error(self) -> int:
        return int(getattr(self._errors, "code", 0))

    def _fail(self, code: int) -> Any:
        self._errors.code = code
        return 0

    def _fail_handle(self, code: int) -> Any:
        self._errors.code = code
        return INVALID_HANDLE_VALUE  # what CreateFileW/CreateNamedPipeW return

    def _new_handle(self, end: End) -> int:
        self._next_handle += 4
        self.handles[self._next_handle] = end
        return self._next_handle

    def open_handles(self) -> list[int]:
        return sorted(self.handles)

    def _end(self, handle: Any, what: str) -> End | None:
        end = self.handles.get(handle)
        if end is not None and not end.registered:
            self.violations.append(f"{what} on handle {handle:#x} not in the IOCP")
        return end

    def _complete(self, op: Op, status: int, transferred: int = 0) -> None:
        if op.done:
            return
        op.done, op.status, op.transferred = True, status, transferred
        if op in op.end.reads:
            op.end.reads.remove(op)
        if op.end.instance.connect_op is op:
            op.end.instance.connect_op = None
        if op.waiter is not None:
            trio.lowlevel.reschedule(op.waiter)
            op.waiter = None

    def _complete_later(self, op: Op, status: int) -> None:
        # A completion packet arrives on a later turn of the event loop.
        assert self.token is not None
        self.token.run_sync_soon(self._complete, op, status)

    def _fill(self, end: End, op: Op) -> bool:
        """Satisfy a read from the inbound queue; False if there is nothing."""
        if not end.inbound:
            return False
        if end.message_read:
            message = end.inbound[0]
            count = min(len(message), op.length)
            ctypes.memmove(op.buffer, message, count)
            if count < len(message):
                end.inbound[0] = message[count:]
                self._complete(op, ERROR_MORE_DATA, count)
            else:
                end.inbound.popleft()
                self._complete(op, 0, count)
            return True
        data = b""
        while end.inbound and len(data) < op.length:
            message = end.inbound[0]
            if not message:
                end.inbound.popleft()
                if not data:
                    break  # a zero-byte read
                continue  # pessimistic: swallowed by a byte-mode read
            take = message[: op.length - len(data)]
            data += take
            if len(take) < len(message):
                end.inbound[0] = message[len(take) :]
            else:
                end.inbound.popleft()
        ctypes.memmove(op.buffer, data, len(data))
        self._complete(op, 0, len(data))
        return True

    def _feed(self, end: End) -> None:
        while end.reads:
            op = end.reads[0]
            if self._fill(end, op):
                continue
            if end.peer_gone():
                self._complete(op, ERROR_BROKEN_PIPE)
                continue
            break

    # -- kernel32 ---------------------------------------------------------------

    def k_CreateNamedPipeW(self, name: str, open_mode: int, pipe_mode: int,
                           max_instances: int, *_: Any) -> Any:  # fmt: skip
        with self.lock:
            if not open_mode & FILE_FLAG_OVERLAPPED:
                self.violations.append(f"{name} created without FILE_FLAG_OVERLAPPED")
            pipe = self.pipes.get(name.lower())
            if pipe is not None and pipe.instances:
                if open_mode & FILE_FLAG_FIRST_PIPE_INSTANCE:
                    return self._fail_handle(ERROR_ACCESS_DENIED)
                if len(pipe.instances) >= pipe.max_instances:
                    return self._fail_handle(ERROR_PIPE_BUSY)
            else:
                pipe = PipeName(
                    name, bool(pipe_mode & PIPE_TYPE_MESSAGE), max_instances
                )
                self.pipes[name.lower()] = pipe
            instance = Instance(
                pipe, open_mode & 3, bool(pipe_mode & PIPE_READMODE_MESSAGE)
            )
            pipe.instances.append(instance)
            handle = self._new_handle(instance.server)
            if self.intruder == 0 and "packeteer-anon" in name:
                self.intruder = self.k_CreateFileW(
                    name, GENERIC_READ, 0, None, 3, FILE_FLAG_OVERLAPPED, None
                )
            return handle

    def k_CreateFileW(self, name: str, access: int, share: int, sa: Any,
                      disposition: int, flags: int, template: Any) -> Any:  # fmt: skip
        with self.lock:
            if not flags & FILE_FLAG_OVERLAPPED:
                self.violations.append(f"{name} opened without FILE_FLAG_OVERLAPPED")
            pipe = self.pipes.get(name.lower())
            if pipe is None or not pipe.instances:
                return self._fail_handle(ERROR_FILE_NOT_FOUND)
            for instance in pipe.instances:
                if instance.state == "listening":
                    break
            else:
                return self._fail_handle(ERROR_PIPE_BUSY)
            client = End(instance, server=False, message_read=False)
            client.can_read = bool(access & GENERIC_READ)
            client.can_write = bool(access & GENERIC_WRITE)
            instance.client = client
            instance.state = "connected"
            if instance.connect_op is not None:
                self._complete(instance.connect_op, 0)
            return self._new_handle(client)

    def k_ConnectNamedPipe(self, handle: int, address: int) -> Any:
        with self.lock:
            end = self._end(handle, "ConnectNamedPipe")
            if end is None:
                return self._fail(ERROR_INVALID_HANDLE)
            instance = end.instance
            if instance.state == "connected":
                client = instance.client
                gone = client is None or client.closed
                return self._fail(ERROR_NO_DATA if gone else ERROR_PIPE_CONNECTED)
            op = Op(end, address)
            self.ops[address] = op
            instance.connect_op = op
            return self._fail(ERROR_IO_PENDING)

    def k_WaitNamedPipeW(self, name: str, timeout_ms: int) -> Any:
        # Runs in a worker thread, like the real blocking call.
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            with self.lock:
                pipe = self.pipes.get(name.lower())
                if pipe is None or not pipe.instances:
                    return self._fail(ERROR_FILE_NOT_FOUND)
                if any(i.state == "listening" for i in pipe.instances):
                    return 1
            if time.monotonic() >= deadline:
                return self._fail(ERROR_SEM_TIMEOUT)
            time.sleep(0.002)

    def k_ReadFile(self, handle: int, buffer: Any, length: int, nread: Any,
                   address: int) -> Any:  # fmt: skip
        with self.lock:
            end = self._end(handle, "ReadFile")
            if end is None or not end.can_read:
                return self._fail(ERROR_INVALID_HANDLE)
            op = Op(end, address, buffer, length)
            if not end.reads and self._fill(end, op):
                self.ops[address] = op  # completed at once: a packet is queued
                if op.status:
                    return self._fail(op.status)
                return 1
            if end.peer_gone() and not end.inbound:
                return self._fail(ERROR_BROKEN_PIPE)  # no packet
            self.ops[address] = op
            end.reads.append(op)
            return self._fail(ERROR_IO_PENDING)

    def k_CancelIoEx(self, handle: int, address: Any) -> Any:
        with self.lock:
            end = self.handles.get(handle)
            if end is None:
                return self._fail(ERROR_INVALID_HANDLE)
            found = [
                op
                for op in self.ops.values()
                if op.end is end and not op.done and address in (None, op.address)
            ]
            for op in found:
                self._complete_later(op, ERROR_OPERATION_ABORTED)
            return 1 if found else self._fail(ERROR_NOT_FOUND)

    def k_CloseHandle(self, handle: int) -> Any:
        with self.lock:
            end = self.handles.pop(handle, None)
            if end is None:
                self.violations.append(f"CloseHandle({handle:#x}): not open")
                return self._fail(ERROR_INVALID_HANDLE)
            pending = [op for op in self.ops.values() if op.end is end and not op.done]
            if pending:
                self.violations.append(f"CloseHandle({handle:#x}) with I/O pending")
                for op in pending:
                    self._complete(op, ERROR_OPERATION_ABORTED)
            end.closed = True
            instance = end.instance
            if end.server and instance in instance.pipe.instances:
                instance.pipe.instances.remove(instance)
            peer = end.peer
            if peer is not None and not peer.closed:
                self._feed(peer)
            return 1

    def k_GetNamedPipeInfo(self, handle: int, flags: Any, *_: Any) -> Any:
        with self.lock:
            end = self.handles.get(handle)
            if end is None:
                return self._fail(ERROR_INVALID_HANDLE)
            value = (1 if end.server else 0) | (
                PIPE_TYPE_MESSAGE if end.instance.pipe.message_type else 0
            )
            flags._obj.value = value
            return 1

    def k_SetNamedPipeHandleState(self, handle: int, mode: Any, *_: Any) -> Any:
        with self.lock:
            end = self.handles.get(handle)
            if end is None:
                return self._fail(ERROR_INVALID_HANDLE)
            message = bool(mode._obj.value & PIPE_READMODE_MESSAGE)
            if message and not end.instance.pipe.message_type:
                return self._fail(ERROR_INVALID_PARAMETER)
            end.message_read = message
            return 1

    # -- trio's IOCP functions ----------------------------------------------------

    def register_with_iocp(self, handle: int) -> None:
        end = self.handles[handle]
        if end.registered:
            raise OSError(ERROR_INVALID_PARAMETER, "already associated")
        end.registered = True
        self.token = trio.lowlevel.current_trio_token()

    async def wait_overlapped(self, handle: int, overlapped: Any) -> object:
        from trio._core._generated_windows_ffi import ffi

        address = int(ffi.cast("uintptr_t", overlapped))
        op = self.ops.get(address)
        if op is None:
            self.violations.append("waited for a completion that was never queued")
            raise AssertionError("waited for a completion that was never queued")
        raise_cancel: Any = None
        if not op.done:
            op.waiter = trio.lowlevel.current_task()

            def abort(raise_cancel_: Any) -> trio.lowlevel.Abort:
                nonlocal raise_cancel
                raise_cancel = raise_cancel_
                self.k_CancelIoEx(handle, address)  # too late is fine too
                return trio.lowlevel.Abort.FAILED

            await trio.lowlevel.wait_task_rescheduled(abort)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
        del self.ops[address]
        op.buffer = None  # the kernel is done with it
        overlapped.Internal = op.status
        overlapped.InternalHigh = op.transferred
        if op.status == ERROR_OPERATION_ABORTED:
            if raise_cancel is not None:
                raise_cancel()
            raise trio.ClosedResourceError("another task closed this resource")
        if op.status:
            raise self.error_class(op.status)
        return object()

    async def write_overlapped(self, handle: int, data: Any, offset: int = 0) -> int:
        await trio.lowlevel.checkpoint_if_cancelled()
        with self.lock:
            end = self._end(handle, "WriteFile")
            if end is None or not end.can_write:
                raise self.error_class(ERROR_INVALID_HANDLE)
            payload = bytes(data)
            peer = end.peer
            if end.instance.state != "connected" or peer is None or peer.closed:
                raise self.error_class(ERROR_NO_DATA)
            if payload or end.instance.pipe.message_type:  # byte pipes drop b""
                peer.inbound.append(payload)
                self._feed(peer)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return len(payload)

    def unconsumed_completions(self) -> list[int]:
        return [address for address, op in self.ops.items() if op.done]


class Simulated:
    """The loaded modules and the kernel they talk to."""

    def __init__(self, kernel: Kernel, modules: dict[str, ModuleType]) -> None:
        self.kernel = kernel
        self.win32 = modules["packeteer_trio._win32"]
        self.stream_windows = modules["packeteer_trio._trio._stream_windows"]
        self.pipe_windows = modules["packeteer_trio.schemes._pipe_windows"]

    def check_clean(self) -> None:
        kernel = self.kernel
        assert not kernel.violations, kernel.violations
        assert not kernel.unconsumed_completions(), "completion packets left over"
        assert not kernel.open_handles(), f"handles left open: {kernel.open_handles()}"


def load(monkeypatch: pytest.MonkeyPatch) -> Simulated:
    """Import the Windows modules against a fresh :class:`Kernel`.

    Registers ``pipe://`` and ``anon://`` with the Windows connectors and
    routes handle endpoints to HandleStream for the test; ``monkeypatch``
    undoes all of it. The caller removes the modules (:func:`unload`).
    """
    import ctypes.wintypes  # imported before sys.platform is patched below

    import packeteer_trio._trio._stream as stream_module
    from packeteer_trio import _registry
    from packeteer_trio.schemes import anon, pipe

    kernel = Kernel()
    monkeypatch.setattr(ctypes, "WinDLL", lambda *a, **k: kernel.dll, raising=False)
    monkeypatch.setattr(ctypes, "get_last_error", kernel.get_last_error, raising=False)
    monkeypatch.setattr(
        ctypes, "FormatError", lambda code=0: f"simulated error {code}", raising=False
    )
    for name in ("wait_overlapped", "write_overlapped", "register_with_iocp"):
        monkeypatch.setattr(trio.lowlevel, name, getattr(kernel, name), raising=False)
    unload()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "platform", "win32")
        modules = {name: importlib.import_module(name) for name in MODULES}
    sim = Simulated(kernel, modules)

    real_error = sim.win32.WinError

    class SimWinError(real_error):  # type: ignore[misc, valid-type]
        """On Windows every OSError has ``winerror``; give ours one here too."""

        def __init__(self, code: int) -> None:
            super().__init__(code)
            self.winerror = code

    kernel.error_class = SimWinError
    monkeypatch.setattr(sim.win32, "WinError", SimWinError)

    # The registry and wrap_stream as they are on Windows (undone by monkeypatch).
    _registry.names()  # the built-in schemes are loaded
    pipe_scheme = _registry.Scheme(
        "pipe",
        pipe.validate,
        connect=sim.pipe_windows.connect,
        listen=sim.pipe_windows.listen,
    )
    anon_scheme = _registry.Scheme(
        "anon", anon.validate, connect=sim.pipe_windows.connect_anon
    )
    for scheme in (pipe_scheme, anon_scheme):
        monkeypatch.setitem(_registry._schemes, scheme.name, scheme)

    class _WindowsSys:
        platform = "win32"

    monkeypatch.setattr(stream_module, "sys", _WindowsSys)
    return sim


def unload() -> None:
    """Forget the Windows modules (so a POSIX process is as before)."""
    import packeteer_trio
    import packeteer_trio._trio
    import packeteer_trio.schemes

    for name in MODULES:
        sys.modules.pop(name, None)
    for package, attribute in (
        (packeteer_trio, "_win32"),
        (packeteer_trio._trio, "_stream_windows"),
        (packeteer_trio.schemes, "_pipe_windows"),
    ):
        if attribute in vars(package):
            delattr(package, attribute)

"""trio's cffi FFI instance: the one private trio name packeteer_trio uses.

Windows pipes (:mod:`._win32`) allocate their OVERLAPPED structs with *trio's*
FFI, because trio keeps such an object referenced when a ``CancelIoEx`` comes
too late, so its address cannot be reused before trio has seen the last
completion for it (an OVERLAPPED from any other allocator could be freed and
reused meanwhile). trio exports no public name for that FFI, so we take it
from ``trio._core._generated_windows_ffi``; if a trio release moves it, any
loaded trio module that holds a cffi FFI with an OVERLAPPED type will do
(trio's IOCP manager needs one, and on Windows ``import trio`` loads it).
``tests/test_pipe_windows.py`` fails loudly if the first place is gone.

Importable everywhere (the simulated-kernel tests use it on POSIX); it needs
cffi, a trio dependency on Windows.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

#: Where trio keeps its Windows FFI today (trio 0.22 to 0.35 at least).
TRIO_FFI_MODULE = "trio._core._generated_windows_ffi"


def _is_overlapped_ffi(candidate: Any) -> bool:
    try:
        return bool(candidate.sizeof("OVERLAPPED"))
    except Exception:  # not a cffi FFI, or one without OVERLAPPED
        return False


def trio_ffi() -> Any:
    """trio's cffi FFI, from its usual module or wherever trio now keeps it."""
    try:
        ffi = importlib.import_module(TRIO_FFI_MODULE).ffi
    except (ImportError, AttributeError):
        pass
    else:
        if _is_overlapped_ffi(ffi):
            return ffi
    for name, module in list(sys.modules.items()):
        if name.startswith("trio.") and module is not None:
            ffi = getattr(module, "ffi", None)
            if _is_overlapped_ffi(ffi):
                return ffi
    raise ImportError(
        f"packeteer_trio: trio no longer has its Windows cffi FFI in "
        f"{TRIO_FFI_MODULE} nor in any loaded trio module; Windows pipes need "
        "it for their OVERLAPPED structs (please report this with your trio "
        "version)"
    )

"""sitecustomize for the Windows CPython that .ci/wine runs under Wine.

Test environment only: .ci/wine copies this file into that Python's
site-packages; it is not part of packeteer_trio and never runs on Windows.

trio's IOCP manager asks each socket for its base handle three ways at start
(SIO_BASE_HANDLE, SIO_BSP_HANDLE_SELECT, SIO_BSP_HANDLE_POLL) to detect
layered service providers. Wine 8 implements only SIO_BASE_HANDLE and answers
the other two with WSAEOPNOTSUPP (10045), so trio.run() fails before
anything runs. Wine has no layered providers, so the base handle is the
right answer to all three: when trio's _io_windows module is imported, its
query function falls back to SIO_BASE_HANDLE on 10045. Nothing else changes;
trio is not imported until the program imports it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_TARGET = "trio._core._io_windows"
_WSAEOPNOTSUPP = 10045


def _patch(module: ModuleType) -> None:
    namespace = vars(module)
    query = namespace["_get_underlying_socket"]
    base = namespace["WSAIoctls"].SIO_BASE_HANDLE

    def get_underlying_socket(sock: Any, *, which: Any = base) -> Any:
        try:
            return query(sock, which=which)
        except OSError as exc:
            if which == base or exc.winerror != _WSAEOPNOTSUPP:
                raise
            return query(sock, which=base)

    namespace["_get_underlying_socket"] = get_underlying_socket


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _patch(module)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


if sys.platform == "win32":
    sys.meta_path.insert(0, _PatchOnImport())

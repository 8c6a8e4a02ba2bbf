r"""pipe:// — Windows named pipes: ``pipe:///name`` is ``\\.\pipe\name``.

This module is the scheme and importable on every platform. What is pure
(the name mapping, URL validation, the name of an ``anon://`` pipe, the
platform decision and the translation of Win32 error codes into OSErrors)
is :mod:`._pipe_names`, re-exported here. The connectors themselves live in
:mod:`._pipe_windows`, which is imported on Windows only; POSIX processes
never load it.

On POSIX ``pipe://`` is an :class:`UnsupportedScheme` naming ``local://`` and
``fifo://``. See ``docs/platforms.md`` for what has been run where.
"""

from __future__ import annotations

import sys

from .._endpoints import ListenerEndpoint, StreamEndpoint
from .._registry import Scheme, register
from .._url import URL
from ._pipe_names import (
    MAX_NAME_CHARS,
    PREFIX,
    UNSUPPORTED_ON_POSIX,
    anon_pipe_name,
    pipe_error,
    unsupported_reason,
    validate,
    windows_name,
)

__all__ = [
    "MAX_NAME_CHARS",
    "PREFIX",
    "UNSUPPORTED_ON_POSIX",
    "anon_pipe_name",
    "pipe_error",
    "unsupported_reason",
    "validate",
    "windows_name",
]


if sys.platform == "win32":  # pragma: no cover - Linux CI cannot run this branch
    # The Windows module is loaded on first use, not at import: nothing of it
    # runs until a pipe:// or anon:// connector is opened, and it can import
    # the pure names above without an import cycle.

    async def _connect(url: URL) -> StreamEndpoint:
        from ._pipe_windows import connect

        return await connect(url)

    async def _listen(url: URL, backlog: int | None) -> ListenerEndpoint:
        from ._pipe_windows import listen

        return await listen(url, backlog)

    async def connect_anon(url: URL) -> StreamEndpoint:
        """``anon://`` on Windows: see :func:`._pipe_windows.connect_anon`."""
        from ._pipe_windows import connect_anon as connect

        return await connect(url)

    register(Scheme("pipe", validate, connect=_connect, listen=_listen))
else:
    register(Scheme("pipe", unsupported=unsupported_reason(sys.platform)))

"""pipe:// — Windows named pipes: ``pipe:///name`` is ``\\\\.\\pipe\\name``.

The name mapping is pure and lives here for every platform; the connectors
exist on Windows only.
"""

from __future__ import annotations

import sys

from .._errors import InvalidURL
from .._registry import Scheme, register
from .._url import URL


def validate(url: URL, text: str) -> URL:
    if url.host or url.port is not None:
        raise InvalidURL(f"{text!r}: pipe:// takes a name, not a host: pipe:///name")
    if url.path in ("", "/"):
        raise InvalidURL(f"{text!r}: pipe:// needs a name, e.g. pipe:///myapp")
    return url


def windows_name(url: URL) -> str:
    r"""``pipe:///foo`` → ``\\.\pipe\foo`` (slashes become backslashes)."""
    return "\\\\.\\pipe\\" + url.path.lstrip("/").replace("/", "\\")


if sys.platform != "win32":
    register(
        Scheme(
            "pipe",
            unsupported="pipe:// (Windows named pipes) exists only on Windows; "
            "use local:///path (AF_UNIX) or fifo:///path on this platform",
        )
    )
else:  # pragma: no cover
    register(Scheme("pipe", validate))

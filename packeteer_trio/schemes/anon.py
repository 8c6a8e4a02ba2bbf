"""anon:// — an anonymous pipe whose writes read back (a self-pipe).

Useful for in-process signalling and for handing one end to a child process
(:meth:`PipeStream.split` gives the two directions separate owners). A pipe
buffer is finite (64 KiB on Linux): writing more than that without reading
blocks, so read and write from different tasks.

On Windows it is, as in packeteer, a named pipe with a generated unique name
(see :func:`.pipe.connect_anon`).
"""

from __future__ import annotations

import os
import sys

from .._endpoints import StreamEndpoint
from .._errors import InvalidURL, with_url
from .._registry import Scheme, register
from .._url import URL


def validate(url: URL, text: str) -> URL:
    if url.host or url.port is not None or url.path not in ("", "/"):
        raise InvalidURL(f"{text!r}: anon:// takes no host or path; write anon://")
    return url.replace(path="")


if sys.platform == "win32":  # pragma: no cover
    from .pipe import connect_anon

    register(Scheme("anon", validate, connect=connect_anon))
else:

    async def connect(url: URL) -> StreamEndpoint:
        try:
            read_fd, write_fd = os.pipe()
        except OSError as exc:  # EMFILE, ENFILE: name the URL
            raise with_url(exc, url, "connect") from exc
        for fd in (read_fd, write_fd):
            os.set_blocking(fd, False)
        return StreamEndpoint(url=url, read_fd=read_fd, write_fd=write_fd)

    register(Scheme("anon", validate, connect=connect))

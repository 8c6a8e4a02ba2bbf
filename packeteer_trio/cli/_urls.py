"""What a URL means to the subcommands: datagrams or a stream, and which
address our own end of a datagram channel gets."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import packeteer_trio as pt

# The one private import: the public API has no "what can this scheme do?"
# (user schemes from register_scheme() count too).
from .._registry import lookup


def is_datagram(url: pt.URL) -> bool:
    """True if the URL means datagrams (udp://, local://…?behaviour=datagram)."""
    return url.behaviour == "datagram" or "stream" not in lookup(url.scheme).behaviours


@contextmanager
def local_binding(url: pt.URL, given: pt.URL | None) -> Iterator[pt.URL | None]:
    """Our end's address for a connected datagram channel.

    A ``local://`` peer can only answer a sender that has an address. On Linux
    the core autobinds an abstract name; elsewhere we bind a temporary path.
    """
    if given is not None or url.scheme != "local" or sys.platform.startswith("linux"):
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="packeteer-") as tmp:
        path = str(Path(tmp) / "client.sock")
        yield pt.URL("local", path=path, query=pt.Query({"behaviour": "datagram"}))


def numbered(local: pt.URL | None, index: int) -> pt.URL | None:
    """The *index*-th of several local bindings (one per channel)."""
    if local is None:
        return None
    return local.replace(path=f"{local.path}.{index}")

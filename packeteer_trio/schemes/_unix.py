"""What the AF_UNIX schemes share (local://, and fd:// over inherited AF_UNIX
sockets): the address a URL names, and destination URLs as addresses."""

from __future__ import annotations

import socket
import sys

from .._endpoints import PEER, Lookup, Resolve, SendToPeer, SockAddr
from .._errors import InvalidURL
from .._url import URL
from ._paths import encoded

# CPython's socket module has no AF_UNIX on Windows, not even where Windows 10
# 1803+ has the sockets (CPython issue #77589); there local:// is unsupported.
AF_UNIX: int = getattr(socket, "AF_UNIX", -1)
# sun_path is 108 bytes on Linux, 104 on the BSDs, and must keep a final NUL
# for paths; abstract names use every byte (their leading NUL is one of them).
MAX_PATH_BYTES = 107 if sys.platform.startswith("linux") else 103
MAX_ABSTRACT_BYTES = 108


def is_abstract(url: URL) -> bool:
    return url.path.startswith("/\0")


def is_padded(url: URL) -> bool:
    """``?padded=1``: the abstract name fills sun_path with NULs, as packeteer's."""
    return url.query.get("padded") == "1"


def sockaddr(url: URL) -> str:
    """The AF_UNIX address: the path, or the abstract name with its NUL.

    An abstract name is exactly as long as written (as socat, systemd and
    Python use them) unless ``?padded=1`` asks for packeteer's form: the
    name NUL-padded to the whole of sun_path. The kernel tells the two apart
    by length, so each side must use the other's spelling to meet.
    """
    if not is_abstract(url):
        return url.path
    name = url.path[1:]
    if is_padded(url):
        name += "\0" * (MAX_ABSTRACT_BYTES - len(encoded(name, str(url))))
    return name


def unix_addressing(own: URL, *, pair: bool) -> tuple[Lookup, Resolve]:
    """The ``lookup``/``resolve`` pair of an AF_UNIX datagram socket at *own*
    (an unnamed pair if *pair*): a path is its own address, so resolving is
    looking up."""

    def lookup(dest: URL) -> SockAddr | SendToPeer:
        if dest.scheme != "local":
            raise InvalidURL(f"{own}: cannot send to {dest}: not a local:// URL")
        if pair:
            if dest.path:
                raise InvalidURL(
                    f"{own}: cannot send to {dest}: an unnamed pair sends only "
                    "to itself; open_datagram() a path to reach others"
                )
            return PEER
        if dest.path:
            return sockaddr(dest)
        raise InvalidURL(
            f"{own}: cannot send to {dest}: an unnamed socket has no address "
            "(give the sender one: connect_datagram(..., local=...))"
        )

    async def resolve(dest: URL) -> SockAddr | SendToPeer:
        return lookup(dest)

    return lookup, resolve

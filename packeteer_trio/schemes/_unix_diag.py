"""Linux: is a socket file bound by a live socket? Asked without connecting.

``local://`` listeners replace only a stale socket file. Probing with
``connect()`` answers that, but costs a live server an empty connection (a
greeting server then writes into a closed socket, a ``cat --listen`` takes it
for its client). The kernel's socket diagnostics (``NETLINK_SOCK_DIAG``, what
``ss -x`` reads) list every AF_UNIX socket of this network namespace with the
device and inode of the file it is bound to: if one matches, the file is
live and nobody is contacted. Sockets of other network namespaces (a
container sharing the directory) are not listed, so "none found" still
needs the probe.
"""

from __future__ import annotations

import os
import socket
import struct
import sys

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_REQUEST_DUMP = _NLM_F_REQUEST | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_UDIAG_SHOW_VFS = 0x2
_UNIX_DIAG_VFS = 1
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_REQUEST = struct.Struct("=BBHIIIII")  # struct unix_diag_req
_MESSAGE_SIZE = 16  # struct unix_diag_msg
_ATTRIBUTE = struct.Struct("=HH")  # struct rtattr
_VFS = struct.Struct("=II")  # struct unix_diag_vfs: inode, device


def is_bound_here(info: os.stat_result) -> bool | None:
    """Whether a socket of this network namespace is bound to the file *info*
    describes; None where that cannot be asked (not Linux, netlink refused)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return _vfs_key(info) in _bound_files(None)
    except OSError:
        return None


def is_bound_by(sock: socket.socket, info: os.stat_result) -> bool | None:
    """Whether *sock* itself is bound to the file *info* describes (None: can't
    ask). ``lstat`` after ``bind`` alone cannot say: the path may have been
    swapped in between."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return _vfs_key(info) in _bound_files(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None


def _vfs_key(info: os.stat_result) -> tuple[int, int]:
    if not sys.platform.startswith("linux"):
        raise OSError("only Linux reports the files sockets are bound to")
    # The kernel reports its own dev_t encoding (major << 20 | minor) and
    # only 32 bits of the inode number.
    return info.st_ino & 0xFFFFFFFF, os.major(info.st_dev) << 20 | os.minor(info.st_dev)


def _bound_files(socket_inode: int | None) -> set[tuple[int, int]]:
    """(inode, kernel device) of the file each AF_UNIX socket is bound to: of
    every socket in this network namespace, or of the one with *socket_inode*."""
    if not sys.platform.startswith("linux"):  # AF_NETLINK exists only there
        raise OSError("sock_diag exists only on Linux")
    dump = socket_inode is None
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)  # the kernel answers at once; never hang a listen()
        request = _REQUEST.pack(
            socket.AF_UNIX,
            0,
            0,
            0xFFFFFFFF,
            0 if socket_inode is None else socket_inode & 0xFFFFFFFF,
            _UDIAG_SHOW_VFS,
            0xFFFFFFFF,  # no cookie: accepted for a lookup by inode
            0xFFFFFFFF,
        )
        flags = _NLM_F_REQUEST_DUMP if dump else _NLM_F_REQUEST
        header = _HEADER.pack(
            _HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, flags, 1, 0
        )
        nl.send(header + request)
        found: set[tuple[int, int]] = set()
        while True:
            data = nl.recv(1 << 16)
            if not data:
                raise OSError("sock_diag: the answer ended early")
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind = _HEADER.unpack_from(data, offset)[:2]
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
                    raise OSError(code, os.strerror(code))
                _collect_vfs(
                    data, offset + _HEADER.size + _MESSAGE_SIZE, offset + length, found
                )
                offset += (length + 3) & ~3
            if not dump:  # a lookup by inode answers with one message
                return found


def _collect_vfs(
    data: bytes, start: int, end: int, found: set[tuple[int, int]]
) -> None:
    while start + _ATTRIBUTE.size <= end:
        length, kind = _ATTRIBUTE.unpack_from(data, start)
        if length < _ATTRIBUTE.size:
            return
        if kind == _UNIX_DIAG_VFS:
            found.add(_VFS.unpack_from(data, start + _ATTRIBUTE.size))
        start += (length + 3) & ~3

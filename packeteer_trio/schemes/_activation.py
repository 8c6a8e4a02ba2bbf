"""Socket activation: the sockets a service manager (systemd) passed.

``LISTEN_FDS`` descriptors from 3 on (``SD_LISTEN_FDS_START``),
``LISTEN_PID`` naming this process, ``LISTEN_FDNAMES`` (colon-separated)
naming them, ``unknown`` if unset. ``fd://listen/NAME`` (or ``/INDEX``)
takes them, each once; :func:`listen_fds` lists them.
"""

from __future__ import annotations

import os

from .._errors import SocketActivationError
from .._url import URL

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START: the first passed descriptor
_spent: set[int] = set()  # inherited descriptors already taken


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def listen_fds() -> list[tuple[int, str]]:
    """The sockets a service manager passed, as ``(descriptor, name)`` pairs.

    Reads ``LISTEN_FDS``, ``LISTEN_PID`` and ``LISTEN_FDNAMES`` (the systemd
    protocol); raises SocketActivationError when they are missing, are meant
    for another process, or do not add up. Nothing is opened or changed.
    """
    return _passed("socket activation")


def _passed(where: str) -> list[tuple[int, str]]:
    count_text = os.environ.get("LISTEN_FDS")
    pid_text = os.environ.get("LISTEN_PID")
    if count_text is None:
        raise SocketActivationError(
            f"{where}: this process was not socket-activated: LISTEN_FDS is not "
            "set (start it from a systemd .socket unit, or for a try "
            "`systemd-socket-activate -l 8080 python app.py`)"
        )
    if pid_text is None:
        raise SocketActivationError(
            f"{where}: LISTEN_FDS is set but LISTEN_PID is not; a service "
            "manager sets both"
        )
    if not _is_number(pid_text) or int(pid_text) != os.getpid():
        raise SocketActivationError(
            f"{where}: LISTEN_PID={pid_text} is not this process (pid "
            f"{os.getpid()}): the sockets were passed to another process (a "
            "parent that left LISTEN_FDS in the environment?)"
        )
    if not _is_number(count_text):
        raise SocketActivationError(
            f"{where}: LISTEN_FDS={count_text!r} is not a number of descriptors"
        )
    count = int(count_text)
    names_text = os.environ.get("LISTEN_FDNAMES")
    names = ["unknown"] * count if names_text is None else names_text.split(":")
    if count == 0 and names_text == "":
        names = []
    if len(names) != count:
        raise SocketActivationError(
            f"{where}: LISTEN_FDNAMES has {len(names)} names for LISTEN_FDS="
            f"{count} descriptors"
        )
    return [(LISTEN_FDS_START + index, name) for index, name in enumerate(names)]


def activated(url: URL) -> list[int]:
    """The inherited descriptors ``fd://listen/NAME`` (or ``/INDEX``) names."""
    passed = _passed(str(url))
    key = url.path[1:]
    if _is_number(key):
        index = int(key)
        if index >= len(passed):
            raise SocketActivationError(
                f"{url}: there is no descriptor {index}: {len(passed)} were "
                f"passed (LISTEN_FDS={len(passed)}; indexes start at 0)"
            )
        fds = [passed[index][0]]
    else:
        fds = [fd for fd, name in passed if name == key]
        if not fds:
            known = ", ".join(sorted({name for _, name in passed})) or "none"
            raise SocketActivationError(
                f"{url}: no inherited descriptor is named {key!r} "
                f"(LISTEN_FDNAMES has: {known})"
            )
    for fd in fds:
        if fd in _spent:
            raise SocketActivationError(
                f"{url}: inherited descriptor {fd} was already taken by an "
                "earlier fd://listen/ connector; each can be taken once"
            )
    return fds


def claim(fds: list[int]) -> None:
    for fd in fds:
        _spent.add(fd)
        # As sd_listen_fds() does: not passed on to programs we exec.
        os.set_inheritable(fd, False)

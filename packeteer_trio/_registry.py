"""Scheme name → scheme: the one table between a parsed URL and the OS calls.

Each module in :mod:`packeteer_trio.schemes` builds a :class:`Scheme` and
registers it with one line; :meth:`URL.parse` asks the scheme to check its own
rules, and the faces (trio, anyio) ask it for raw endpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ._endpoints import (
    DatagramEndpoint,
    ListenerEndpoint,
    PacketEndpoint,
    StreamEndpoint,
)
from ._errors import InvalidURL, UnsupportedScheme
from ._url import URL

if TYPE_CHECKING:
    from ._extend import DatagramSchemeFactory, StreamSchemeFactory

BEHAVIOURS = {"stream": "stream", "datagram": "datagram", "dgram": "datagram"}

Validate = Callable[[URL, str], URL]
ConnectStream = Callable[[URL], Awaitable[StreamEndpoint]]
ListenStream = Callable[[URL, int | None], Awaitable[ListenerEndpoint]]
# open_datagram: a bound, unconnected socket; connect_datagram(peer, local):
# a connected one (bound first to *local* if given).
OpenDatagram = Callable[[URL], Awaitable[DatagramEndpoint]]
ConnectDatagram = Callable[[URL, URL | None], Awaitable[DatagramEndpoint]]
# A packet device (tun/tap): not a socket; connect_datagram() wraps it.
ConnectPacket = Callable[[URL], Awaitable[PacketEndpoint]]


def _no_rules(url: URL, text: str) -> URL:
    return url


@dataclasses.dataclass(frozen=True)
class Scheme:
    """What a scheme can do, and the factories that do it.

    ``validate`` enforces the scheme's own URL rules and may normalise the URL.
    A factory left as ``None`` means the scheme has no such behaviour.
    ``unsupported`` names the reason (and the alternative) on platforms that
    lack the scheme; such a scheme rejects every URL with UnsupportedScheme.
    ``connect_packet`` opens a packet device (tun/tap) that is no socket;
    ``connect_datagram()`` gives a channel over it.
    ``factory`` is set for schemes added with the public ``register_scheme``:
    their factories build finished trio objects, which the trio face uses
    instead of raw endpoints (see :mod:`._extend`); None for built-ins.
    """

    name: str
    validate: Validate = _no_rules
    connect: ConnectStream | None = None
    listen: ListenStream | None = None
    open_datagram: OpenDatagram | None = None
    connect_datagram: ConnectDatagram | None = None
    unsupported: str | None = None
    connect_packet: ConnectPacket | None = None
    factory: StreamSchemeFactory | DatagramSchemeFactory | None = None

    @property
    def behaviours(self) -> frozenset[str]:
        found = set()
        if self.connect or self.listen:
            found.add("stream")
        if self.open_datagram or self.connect_datagram or self.connect_packet:
            found.add("datagram")
        return frozenset(found)

    def check(self, url: URL, text: str) -> URL:
        """Apply the generic option rules, then the scheme's own."""
        if self.unsupported:
            raise UnsupportedScheme(f"{text!r}: {self.unsupported}")
        behaviour = url.query.get("behaviour")
        if behaviour is not None:
            if behaviour not in BEHAVIOURS:
                raise InvalidURL(
                    f"{text!r}: behaviour={behaviour!r} is not one of "
                    "stream, datagram, dgram"
                )
            if BEHAVIOURS[behaviour] not in self.behaviours:
                raise InvalidURL(
                    f"{text!r}: {self.name}:// has no {BEHAVIOURS[behaviour]} "
                    f"behaviour (it has: {', '.join(sorted(self.behaviours))})"
                )
        blocking = url.query.get("blocking")
        if blocking is not None and blocking not in ("0", "1"):
            raise InvalidURL(f"{text!r}: blocking={blocking!r} is not a boolean")
        return self.validate(url, text)

    def missing(self, verb: str, url: URL) -> InvalidURL:
        """The error for a verb this scheme lacks, pointing at the one it has."""
        return InvalidURL(f"{url}: {self.name}:// {_MISSING[verb]}")


_MISSING = {
    "connect": "cannot connect; use listen()",
    "listen": "has nothing to listen on; use connect()",
    "open_datagram": "cannot be bound; use connect_datagram()",
    "connect_datagram": "cannot connect; use open_datagram()",
}
_schemes: dict[str, Scheme] = {}
_builtins_loaded = False


def register(scheme: Scheme, *, replace: bool = False) -> None:
    """Add *scheme* to the table; refuse to replace one silently."""
    name = scheme.name
    if not name or name != name.lower() or "://" in name:
        raise ValueError(f"bad scheme name {name!r}: use a non-empty lower-case name")
    if name in _schemes and not replace:
        raise ValueError(f"scheme {name!r} is already registered")
    _schemes[name] = scheme


def unregister(name: str) -> Scheme:
    """Remove *name* from the table and return its scheme (KeyError if absent)."""
    return _schemes.pop(name)


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        from . import schemes  # noqa: F401  (each module registers itself)


def lookup(name: str, text: str | None = None) -> Scheme:
    """The scheme registered as *name*; InvalidURL (naming *text*) if none."""
    _load_builtins()
    try:
        return _schemes[name]
    except KeyError:
        known = ", ".join(sorted(_schemes))
        raise InvalidURL(
            f"{text or name!r}: unknown scheme {name!r} (known: {known})"
        ) from None


def names() -> list[str]:
    """Every registered scheme name, sorted."""
    _load_builtins()
    return sorted(_schemes)

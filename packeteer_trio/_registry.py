"""Scheme name → scheme: the one table between a parsed URL and what opens it.

Two kinds of scheme share the table:

- :class:`Scheme`, a built-in: a module of :mod:`packeteer_trio.schemes`
  builds one with the OS-level factories it has (``connect``, ``listen``, …)
  and registers it with one line. Its factories return raw endpoints
  (:mod:`._endpoints`), which either face wraps.
- :class:`UserScheme`, added with the public ``register_scheme``: its
  factory builds finished trio objects (a :class:`trio.abc.Stream`, …), which
  only the trio face can adapt.

This is layer 1: it imports the URL and endpoint types and nothing that
opens anything. It installs the scheme rules into :meth:`URL.parse` when
imported (:func:`._url.install_scheme_rules`), and loads a scheme that lives
in a higher layer (the TLS example) on its first lookup, by module name.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Awaitable, Callable
from typing import Protocol, final, runtime_checkable

import trio

from ._endpoints import (
    DatagramEndpoint,
    ListenerEndpoint,
    PacketEndpoint,
    StreamEndpoint,
)
from ._errors import InvalidURL, UnsupportedScheme
from ._inproc import InprocDatagramEnd, InprocListenerEnd, InprocStreamEnd
from ._url import URL, install_scheme_rules

BEHAVIOURS = {
    "stream": "stream",
    "datagram": "datagram",
    "dgram": "datagram",
    "seqpacket": "seqpacket",
}

Validate = Callable[[URL, str], URL]
# inproc:// has no descriptors: its factories give its own ends (._inproc).
ConnectStream = Callable[[URL], Awaitable[StreamEndpoint | InprocStreamEnd]]
ListenStream = Callable[
    [URL, int | None], Awaitable[ListenerEndpoint | InprocListenerEnd]
]
# open_datagram: a bound, unconnected socket; connect_datagram(peer, local):
# a connected one (bound first to *local* if given).
OpenDatagram = Callable[[URL], Awaitable[DatagramEndpoint | InprocDatagramEnd]]
ConnectDatagram = Callable[
    [URL, URL | None], Awaitable[DatagramEndpoint | InprocDatagramEnd]
]
# A packet device (tun/tap): not a socket; connect_datagram() wraps it.
ConnectPacket = Callable[[URL], Awaitable[PacketEndpoint]]


def _no_rules(url: URL, text: str) -> URL:
    return url


def _generic_rules(url: URL, text: str, name: str, behaviours: frozenset[str]) -> None:
    """The options every scheme shares: ``behaviour=`` and ``blocking=``."""
    behaviour = url.query.get("behaviour")
    if behaviour is not None:
        if behaviour not in BEHAVIOURS:
            raise InvalidURL(
                f"{text!r}: behaviour={behaviour!r} is not one of "
                "stream, datagram, dgram, seqpacket"
            )
        if BEHAVIOURS[behaviour] not in behaviours:
            raise InvalidURL(
                f"{text!r}: {name}:// has no {BEHAVIOURS[behaviour]} "
                f"behaviour (it has: {', '.join(sorted(behaviours))})"
            )
    blocking = url.query.get("blocking")
    if blocking is not None and blocking not in ("0", "1"):
        raise InvalidURL(f"{text!r}: blocking={blocking!r} is not a boolean")


@final
@dataclasses.dataclass(frozen=True)
class Scheme:
    """A built-in scheme: what it can do, and the factories that do it.

    ``validate`` enforces the scheme's own URL rules and may normalise the URL.
    A factory left as ``None`` means the scheme has no such behaviour.
    ``unsupported`` names the reason (and the alternative) on platforms that
    lack the scheme; such a scheme rejects every URL with UnsupportedScheme.
    ``connect_packet`` opens a packet device (tun/tap) that is no socket;
    ``connect_datagram()`` gives a channel over it. ``seqpacket``: its
    ``connect``/``listen`` take ``?behaviour=seqpacket`` (local://).
    """

    name: str
    validate: Validate = _no_rules
    connect: ConnectStream | None = None
    listen: ListenStream | None = None
    open_datagram: OpenDatagram | None = None
    connect_datagram: ConnectDatagram | None = None
    unsupported: str | None = None
    connect_packet: ConnectPacket | None = None
    seqpacket: bool = False

    @property
    def behaviours(self) -> frozenset[str]:
        found = set()
        if self.connect or self.listen:
            found.add("stream")
            if self.seqpacket:
                found.add("seqpacket")
        if self.open_datagram or self.connect_datagram or self.connect_packet:
            found.add("datagram")
        return frozenset(found)

    def check(self, url: URL, text: str) -> URL:
        """Apply the generic option rules, then the scheme's own."""
        if self.unsupported:
            raise UnsupportedScheme(f"{text!r}: {self.unsupported}")
        _generic_rules(url, text, self.name, self.behaviours)
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


# -- user schemes: the factory protocols and the kind that holds them ----------


@runtime_checkable
class StreamSchemeFactory(Protocol):
    """What :func:`register_scheme` needs for a stream scheme.

    ``connect(url)`` returns a connected :class:`trio.abc.Stream` (a
    :class:`trio.abc.HalfCloseableStream` if it can half-close);
    ``listen(url, backlog)`` a :class:`trio.abc.Listener` of such streams
    (``backlog`` is None for "the default"). Both get the URL already parsed
    and validated. A scheme that cannot do one of them raises
    :exc:`~packeteer_trio.InvalidURL` from it, naming the other.
    Failures should be the usual ``OSError`` subclasses naming the URL.
    """

    async def connect(self, url: URL) -> trio.abc.Stream: ...

    async def listen(
        self, url: URL, backlog: int | None
    ) -> trio.abc.Listener[trio.abc.Stream]: ...


@runtime_checkable
class DatagramSchemeFactory(Protocol):
    """What :func:`register_scheme` needs for a datagram scheme.

    ``open_datagram(url)`` returns a bound, unconnected endpoint as a
    :class:`trio.abc.Channel` of ``(data, address)`` pairs: ``send`` one to
    send *data* to *address*, ``receive`` one to get a datagram and its
    sender. ``connect_datagram(url, local)`` returns a
    :class:`trio.abc.Channel` of ``bytes`` to one peer (bound first to
    *local* if given).
    """

    async def open_datagram(self, url: URL) -> trio.abc.Channel[tuple[bytes, URL]]: ...

    async def connect_datagram(
        self, url: URL, local: URL | None
    ) -> trio.abc.Channel[bytes]: ...


@final
@dataclasses.dataclass(frozen=True)
class UserScheme:
    """A scheme added with ``register_scheme``: one factory of trio objects.

    ``stream`` and ``datagram`` are the protocols the factory implements
    (:class:`StreamSchemeFactory`, :class:`DatagramSchemeFactory`); with both,
    ``?behaviour=datagram`` picks the datagram side, as for ``local://``.
    """

    name: str
    factory: StreamSchemeFactory | DatagramSchemeFactory
    validate: Validate = _no_rules

    @property
    def stream(self) -> StreamSchemeFactory | None:
        factory = self.factory
        return factory if isinstance(factory, StreamSchemeFactory) else None

    @property
    def datagram(self) -> DatagramSchemeFactory | None:
        factory = self.factory
        return factory if isinstance(factory, DatagramSchemeFactory) else None

    @property
    def behaviours(self) -> frozenset[str]:
        found = set()
        if self.stream is not None:
            found.add("stream")
        if self.datagram is not None:
            found.add("datagram")
        return frozenset(found)

    def check(self, url: URL, text: str) -> URL:
        """Apply the generic option rules, then the user's own."""
        _generic_rules(url, text, self.name, self.behaviours)
        return self.validate(url, text)


AnyScheme = Scheme | UserScheme


# -- the table --------------------------------------------------------------------

_schemes: dict[str, AnyScheme] = {}
# Schemes that live above this layer, imported on first lookup: name -> the
# module whose import registers it.
_lazy: dict[str, str] = {}


def register(scheme: AnyScheme, *, replace: bool = False) -> None:
    """Add *scheme* to the table; refuse to replace one silently."""
    name = scheme.name
    if not name or name != name.lower() or "://" in name:
        raise ValueError(f"bad scheme name {name!r}: use a non-empty lower-case name")
    if name in _schemes and not replace:
        raise ValueError(f"scheme {name!r} is already registered")
    _lazy.pop(name, None)
    _schemes[name] = scheme


def register_lazily(name: str, module: str) -> None:
    """Have the first lookup of *name* import *module*, which registers it."""
    if name not in _schemes:
        _lazy[name] = module


def unregister(name: str) -> AnyScheme:
    """Remove *name* from the table and return its scheme (KeyError if absent)."""
    return _schemes.pop(name)


def registered(name: str) -> AnyScheme | None:
    """The scheme registered as *name*, loading it first if it is lazy."""
    module = _lazy.pop(name, None)
    if module is not None:
        # A module importing itself (registering as it loads) finds itself
        # in sys.modules here and is not run twice.
        importlib.import_module(module)
    return _schemes.get(name)


def lookup(name: str, text: str | URL | None = None) -> AnyScheme:
    """The scheme registered as *name*; InvalidURL (naming *text*) if none."""
    scheme = _schemes.get(name) or registered(name)
    if scheme is not None:
        return scheme
    known = ", ".join(names())
    shown = name if text is None else str(text)
    raise InvalidURL(f"{shown!r}: unknown scheme {name!r} (known: {known})")


def names() -> list[str]:
    """Every registered scheme name (lazy ones too), sorted."""
    return sorted({*_schemes, *_lazy})


def check(url: URL, text: str) -> URL:
    """The registered scheme's rules for *url* (parsed from *text*)."""
    return lookup(url.scheme, text).check(url, text)


install_scheme_rules(check)

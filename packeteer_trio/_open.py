"""The open pipeline: from URL text to a raw endpoint or a user scheme's object.

Every verb of both faces goes through here, in one order:

1. **parse**: the generic grammar (:func:`._url.split`), then *one* registry
   lookup, whose scheme applies its own URL rules. A :class:`URL` given as
   such was validated when it was parsed: it is looked up, not checked again.
2. **verb check**: a datagram URL cannot ``connect()``, a stream URL cannot
   ``open_datagram()``, a scheme without the verb names the one it has
   ("use listen()"), and the anyio face refuses user schemes; all of it
   before anything is opened.
3. **open**: a built-in scheme (:class:`BuiltinTarget`) gives raw endpoints
   (:mod:`._endpoints`) for a face to wrap; a user scheme
   (:class:`UserTarget`) gives finished trio objects, checked to be of the
   kind its protocol promises, for the trio face to adapt.

Waiting, checkpoints and the classes that come out are the faces' business.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, TypeVar, final

import trio

import packeteer_trio.schemes  # noqa: F401  (each scheme module registers itself)

from ._accept import capped_backlog
from ._endpoints import (
    DatagramEndpoint,
    ListenerEndpoint,
    PacketEndpoint,
    StreamEndpoint,
)
from ._errors import InvalidURL
from ._inproc import InprocDatagramEnd, InprocListenerEnd, InprocStreamEnd
from ._registry import AnyScheme, Scheme, UserScheme, lookup
from ._url import URL, split

T = TypeVar("T")
Verb = Literal["connect", "listen", "open_datagram", "connect_datagram"]
_STREAM_VERBS = frozenset({"connect", "listen"})


def parse(text: str | URL) -> tuple[URL, AnyScheme]:
    """Step 1: the URL and its scheme, with one lookup."""
    if isinstance(text, URL):
        return text, lookup(text.scheme, text)
    url = split(text)
    scheme = lookup(url.scheme, text)
    return scheme.check(url, text), scheme


def target(
    text: str | URL, verb: Verb, *, local: str | URL | None = None
) -> BuiltinTarget | UserTarget:
    """Steps 1 and 2 for the trio face: user schemes welcome.

    *local* is ``connect_datagram``'s own address.
    """
    url, scheme = parse(text)
    local_url = None if local is None else URL.parse(local)
    _check_behaviour(url, scheme, verb)
    if isinstance(scheme, UserScheme):
        return UserTarget(url, scheme, local_url)
    return BuiltinTarget(url, _check_verb(url, scheme, verb, local_url), local_url)


def builtin_target(
    text: str | URL, verb: Verb, *, local: str | URL | None = None
) -> BuiltinTarget:
    """Steps 1 and 2 for the anyio face, which serves built-in schemes only."""
    found = target(text, verb, local=local)
    if isinstance(found, UserTarget):
        url = found.url
        raise InvalidURL(
            f"{url}: {url.scheme}:// was added with register_scheme() and builds "
            "trio objects; use it through packeteer_trio's trio functions (the "
            "anyio face serves only the built-in schemes)"
        )
    return found


def _check_behaviour(url: URL, scheme: AnyScheme, verb: Verb) -> None:
    behaviours = scheme.behaviours
    if verb in _STREAM_VERBS:
        if url.behaviour == "datagram" or "stream" not in behaviours:
            raise InvalidURL(
                f"{url}: a datagram URL cannot {verb}(); use open_datagram() or "
                "connect_datagram()"
            )
        return
    has_datagram = "datagram" in behaviours
    if not has_datagram or ("stream" in behaviours and url.behaviour != "datagram"):
        hint = " (or add ?behaviour=datagram)" if has_datagram else ""
        raise InvalidURL(
            f"{url}: a stream URL cannot {verb}(); use connect() or listen(){hint}"
        )


def _check_verb(url: URL, scheme: Scheme, verb: Verb, local: URL | None) -> Scheme:
    if verb == "connect_datagram" and scheme.connect_packet is not None:
        if local is not None:
            raise InvalidURL(f"{url}: {url.scheme}:// has no local address to bind")
        return scheme
    if getattr(scheme, verb) is None:
        raise scheme.missing(verb, url)
    return scheme


@final
@dataclasses.dataclass(frozen=True)
class BuiltinTarget:
    """Step 3 for a built-in scheme: its factories, giving raw endpoints.

    The verb check made sure the factory each method calls is there.
    """

    url: URL
    scheme: Scheme
    local: URL | None = None

    async def connect(self) -> StreamEndpoint | InprocStreamEnd:
        connect = self.scheme.connect
        assert connect is not None
        return await connect(self.url)

    async def listen(self, backlog: int | None) -> ListenerEndpoint | InprocListenerEnd:
        listen = self.scheme.listen
        assert listen is not None
        return await listen(self.url, capped_backlog(backlog))

    async def open_datagram(self) -> DatagramEndpoint | InprocDatagramEnd:
        open_datagram = self.scheme.open_datagram
        assert open_datagram is not None
        return await open_datagram(self.url)

    async def connect_datagram(
        self,
    ) -> DatagramEndpoint | PacketEndpoint | InprocDatagramEnd:
        scheme = self.scheme
        if scheme.connect_packet is not None:
            return await scheme.connect_packet(self.url)
        assert scheme.connect_datagram is not None
        return await scheme.connect_datagram(self.url, self.local)


@final
@dataclasses.dataclass(frozen=True)
class UserTarget:
    """Step 3 for a user scheme: its factory, giving finished trio objects."""

    url: URL
    scheme: UserScheme
    local: URL | None = None

    async def connect(self) -> trio.abc.Stream:
        factory = self.scheme.stream
        assert factory is not None
        stream = await factory.connect(self.url)
        return _checked(stream, trio.abc.Stream, self, "connect")

    async def listen(self, backlog: int | None) -> trio.abc.Listener[trio.abc.Stream]:
        factory = self.scheme.stream
        assert factory is not None
        listener = await factory.listen(self.url, capped_backlog(backlog))
        return _checked(listener, trio.abc.Listener, self, "listen")

    async def open_datagram(self) -> trio.abc.Channel[tuple[bytes, URL]]:
        factory = self.scheme.datagram
        assert factory is not None
        channel = await factory.open_datagram(self.url)
        return _checked(channel, trio.abc.Channel, self, "open_datagram")

    async def connect_datagram(self) -> trio.abc.Channel[bytes]:
        factory = self.scheme.datagram
        assert factory is not None
        channel = await factory.connect_datagram(self.url, self.local)
        return _checked(channel, trio.abc.Channel, self, "connect_datagram")


def _checked(result: T, kind: type, target: UserTarget, verb: str) -> T:
    if not isinstance(result, kind):
        raise TypeError(
            f"{target.scheme.factory!r}.{verb}() returned {type(result).__name__}, "
            f"not a {kind.__module__}.{kind.__qualname__}"
        )
    return result

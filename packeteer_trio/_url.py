"""URLs: parse, normalise and format. No I/O happens here.

The grammar is packeteer's: ``scheme://authority/path?query#fragment``. The
generic part (scheme, authority, query) is handled in this module; each scheme
then checks its own rules (families, ports, paths), so ``URL.parse`` rejects
everything that could never be opened before any socket exists.

This module knows no schemes: it is the bottom layer, and the registry sits
above it. The registry hands its check down at import instead
(:func:`install_scheme_rules`), and the package always imports the registry,
so ``URL.parse`` applies the rules of every registered scheme.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from types import EllipsisType
from typing import final
from urllib.parse import quote, unquote

from ._errors import InvalidURL

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://(.*)\Z", re.DOTALL)
_TRUE = frozenset({"true", "yes"})
_FALSE = frozenset({"false", "no"})
# Characters kept literally when formatting; everything else is percent-escaped,
# so that any decoded path or query value survives a parse/format round trip.
_PATH_SAFE = "/-._~!$&'()*+,;=:@"
_QUERY_SAFE = "-._~!$'()*+,;:@/"


@final
class Query(Mapping[str, str]):
    """A read-only, hashable mapping of normalised query options."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(sorted((items or {}).items()))

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Query({self._items!r})"


def _as_query(query: Mapping[str, str]) -> Query:
    return query if isinstance(query, Query) else Query(query)


@final
@dataclasses.dataclass(frozen=True)
class URL:
    """A parsed, normalised connector URL.

    Build one with :meth:`URL.parse`; ``str(url)`` is the canonical form and
    ``URL.parse(str(url)) == url``. Fields are immutable; use
    :meth:`replace` to derive a new URL.
    """

    scheme: str
    host: str = ""
    port: int | None = None
    path: str = ""
    query: Query = dataclasses.field(default_factory=Query)
    fragment: str = ""

    @classmethod
    def parse(cls, text: str | URL) -> URL:
        """Parse and validate *text*; raise :class:`InvalidURL` if it is unusable."""
        if isinstance(text, URL):
            return text
        url = split(text)
        return url if _scheme_rules is None else _scheme_rules(url, text)

    def replace(
        self,
        *,
        scheme: str | None = None,
        host: str | None = None,
        port: int | EllipsisType | None = ...,
        path: str | None = None,
        query: Mapping[str, str] | None = None,
        fragment: str | None = None,
    ) -> URL:
        """Return a copy with the given fields changed (no validation is done).

        A field left out is kept; ``port=None`` removes the port.
        """
        return URL(
            self.scheme if scheme is None else scheme,
            self.host if host is None else host,
            self.port if port is ... else port,
            self.path if path is None else path,
            self.query if query is None else _as_query(query),
            self.fragment if fragment is None else fragment,
        )

    @property
    def behaviour(self) -> str:
        """``"stream"``, ``"datagram"`` or ``"seqpacket"``, as asked for by
        ``?behaviour=``."""
        value = self.query.get("behaviour", "")
        return "datagram" if value in ("datagram", "dgram") else value or "stream"

    def __str__(self) -> str:
        host = self.host
        if ":" in host:  # an IPv6 literal, maybe with a zone: fe80::1%eth0
            address, percent, zone = host.partition("%")
            if percent:  # RFC 6874: the "%" is written %25
                address += "%25" + quote(zone, safe="-._~", errors="surrogateescape")
            host = f"[{address}]"
        else:
            host = quote(host, safe="-._~!$&'()*+,;=", errors="surrogateescape")
        text = f"{self.scheme}://{host}"
        if self.port is not None:
            text += f":{self.port}"
        text += quote(self.path, safe=_PATH_SAFE, errors="surrogateescape")
        if self.query:
            text += "?" + "&".join(
                f"{_q(key)}={_q(value)}" for key, value in self.query.items()
            )
        if self.fragment:
            text += "#" + quote(
                self.fragment, safe="/?:@!$&'()*+,;=-._~", errors="surrogateescape"
            )
        return text

    def __repr__(self) -> str:
        return f"URL({str(self)!r})"


# (url, text) -> url: the registered scheme's own rules, or InvalidURL naming
# *text*. Installed by the registry when it is imported.
SchemeRules = Callable[[URL, str], URL]
_scheme_rules: SchemeRules | None = None


def install_scheme_rules(rules: SchemeRules) -> None:
    """Make :meth:`URL.parse` finish with *rules* (the registry's check)."""
    global _scheme_rules
    _scheme_rules = rules


def split(text: object) -> URL:
    """The scheme-independent part of :meth:`URL.parse`: *text* checked to be
    an encodable str and split into normalised fields; no scheme rules."""
    if not isinstance(text, str):
        raise InvalidURL(f"{text!r}: a URL must be a str, not {type(text).__name__}")
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidURL(
            f"{text!r}: contains characters that cannot be encoded (lone surrogates)"
        ) from None
    return _split(text)


def _q(text: str) -> str:
    return quote(text, safe=_QUERY_SAFE, errors="surrogateescape")


def _unq(text: str) -> str:
    return unquote(text, errors="surrogateescape")


def _split(text: str) -> URL:
    """The scheme-independent part of parsing."""
    match = _SCHEME_RE.match(text)
    if match is None:
        raise InvalidURL(f"{text!r}: not a URL of the form scheme://…")
    scheme, rest = match.group(1).lower(), match.group(2)
    rest, _, fragment = rest.partition("#")
    rest, has_query, query_text = rest.partition("?")
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    host, port = _split_authority(authority, text)
    return URL(
        scheme=scheme,
        host=host,
        port=port,
        path=_unq(path),
        query=_parse_query(query_text, text) if has_query else Query(),
        fragment=_unq(fragment),
    )


def _split_authority(authority: str, text: str) -> tuple[str, int | None]:
    if "@" in authority:
        raise InvalidURL(f"{text!r}: user information (user@host) is not supported")
    port_text: str | None = None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise InvalidURL(f"{text!r}: unterminated IPv6 literal, missing ']'")
        host, after = authority[1:end], authority[end + 1 :]
        if after:
            if not after.startswith(":"):
                raise InvalidURL(f"{text!r}: junk {after!r} after the IPv6 literal")
            port_text = after[1:]
        if ":" not in host:
            raise InvalidURL(f"{text!r}: [{host}] is not an IPv6 address")
        host = _ipv6_host(host, text)
    elif authority.count(":") > 1:
        raise InvalidURL(f"{text!r}: IPv6 addresses must be written in brackets")
    else:
        host, colon, after = authority.partition(":")
        port_text = after if colon else None
        host = _unq(host).lower()
    port: int | None = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit():
            raise InvalidURL(f"{text!r}: bad port {port_text!r}")
        digits = port_text.lstrip("0")
        # int() of thousands of digits is refused (or slow): never call it.
        if len(digits) > 5 or int(digits or "0") > 65535:
            shown = (
                digits if len(digits) <= 12 else f"{digits[:8]}… ({len(digits)} digits)"
            )
            raise InvalidURL(f"{text!r}: port {shown} is out of range 0-65535")
        port = int(digits or "0")
    return host, port


def _ipv6_host(literal: str, text: str) -> str:
    """The host of ``[literal]``: the address lower-cased, its zone (RFC 6874:
    ``fe80::1%25eth0``, the ``%`` escaped; a bare ``%`` is taken too) decoded
    and kept as written, since interface names are case-sensitive."""
    address, percent, zone = literal.partition("%")
    if not percent:
        return address.lower()
    if zone.startswith("25"):
        zone = _unq(zone[2:])
    if not zone:
        raise InvalidURL(f"{text!r}: empty IPv6 zone after '%' in [{literal}]")
    return f"{address.lower()}%{zone}"


def _parse_query(query_text: str, text: str) -> Query:
    options: dict[str, str] = {}
    for part in query_text.split("&"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = _unq(key).lower()
        if not key:
            raise InvalidURL(f"{text!r}: query option without a name: {part!r}")
        value = _unq(value).lower() if eq else "1"
        if value in _TRUE:
            value = "1"
        elif value in _FALSE:
            value = "0"
        options[key] = value
    return Query(options)

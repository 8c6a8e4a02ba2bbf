"""User-defined schemes: the public side of the registry.

Built-in schemes hand raw endpoints (sockets, descriptors) to the faces; a
user scheme such as ``tls+tcp://`` or ``ws://`` is naturally built *on top of*
packeteer's own streams, so its factory returns a finished trio object
instead: a :class:`trio.abc.Stream`, a :class:`trio.abc.Listener`, a
:class:`trio.abc.Channel` (the protocols :class:`StreamSchemeFactory` and
:class:`DatagramSchemeFactory`). :func:`register_scheme` puts such a factory
in the same table as the built-ins (as a :class:`._registry.UserScheme`), so
:func:`~packeteer_trio.connect`, :func:`~packeteer_trio.listen`,
:func:`~packeteer_trio.serve`, :func:`~packeteer_trio.open_datagram` and
:func:`~packeteer_trio.connect_datagram` use it; the trio face shows what it
returns through the adapters of :mod:`._trio._wrapped`.

User schemes are trio-only: the anyio face serves built-in schemes, and
raises :exc:`InvalidURL` saying so for a user scheme (:mod:`._open`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from ._registry import (
    DatagramSchemeFactory,
    StreamSchemeFactory,
    UserScheme,
    register,
    registered,
    unregister,
)
from ._url import URL

__all__ = [
    "DatagramSchemeFactory",
    "StreamSchemeFactory",
    "register_scheme",
    "unregister_scheme",
]

# What URL.parse accepts as a scheme, lower-cased (the parser lower-cases).
_NAME_RE = re.compile(r"[a-z][a-z0-9+.\-]*\Z")


# -- the registry -------------------------------------------------------------


def register_scheme(
    name: str,
    factory: StreamSchemeFactory | DatagramSchemeFactory,
    *,
    validate: Callable[[URL, str], URL] | None = None,
    replace: bool = False,
) -> None:
    """Make ``name://`` URLs open through *factory*, in the trio face.

    *factory* implements :class:`StreamSchemeFactory`,
    :class:`DatagramSchemeFactory`, or both (``?behaviour=datagram`` then
    picks the datagram side, as for ``local://``). *validate(url, text)*
    enforces the scheme's own URL rules during :meth:`URL.parse`: it returns
    the (possibly normalised) URL or raises :exc:`InvalidURL` naming *text*.

    Raises ValueError for a name that is empty or not a lower-case URL
    scheme (``[a-z][a-z0-9+.-]*``), for a built-in scheme (those cannot be
    replaced), and for a name already registered unless *replace* is true;
    TypeError for a factory that implements neither protocol.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"bad scheme name {name!r}: use a non-empty lower-case URL scheme "
            "(a letter, then letters, digits, '+', '-' or '.'), e.g. 'tls+tcp'"
        )
    is_stream = isinstance(factory, StreamSchemeFactory)
    is_datagram = isinstance(factory, DatagramSchemeFactory)
    if not (is_stream or is_datagram):
        raise TypeError(
            f"{factory!r} is not a scheme factory: give it async connect() and "
            "listen() (StreamSchemeFactory) and/or open_datagram() and "
            "connect_datagram() (DatagramSchemeFactory)"
        )
    existing = registered(name)
    if existing is not None:
        if not isinstance(existing, UserScheme):
            raise ValueError(
                f"{name}:// is a built-in scheme and cannot be replaced; "
                "register yours under another name"
            )
        if not replace:
            raise ValueError(
                f"scheme {name!r} is already registered (by {existing.factory!r}); "
                "pass replace=True to replace it"
            )
    scheme = UserScheme(name, factory)
    if validate is not None:
        scheme = dataclasses.replace(scheme, validate=validate)
    register(scheme, replace=True)


def unregister_scheme(name: str) -> None:
    """Remove a scheme added with :func:`register_scheme`.

    ValueError for a built-in scheme or a name that is not registered.
    """
    existing = registered(name)
    if existing is None:
        raise ValueError(f"no scheme {name!r} is registered")
    if not isinstance(existing, UserScheme):
        raise ValueError(f"{name}:// is a built-in scheme and cannot be removed")
    unregister(name)

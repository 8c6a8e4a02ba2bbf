"""Which errors are the user's (one line, exit 1 or 2) and which are bugs."""

from __future__ import annotations

import trio

import packeteer_trio as pt


class UsageError(pt.PacketeerError):
    """A usage mistake only found once running (e.g. a stream URL where a
    datagram URL is needed): reported in one line, exit 2."""


def leaves(exc: BaseException) -> list[BaseException]:
    """The plain exceptions inside (possibly nested) exception groups."""
    # Duck-typed: on Python 3.10 the groups come from the exceptiongroup backport.
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, (list, tuple)):
        return [leaf for group in inner for leaf in leaves(group)]
    return [exc]


def describe(exc: BaseException) -> str:
    """One line saying what went wrong (our OSErrors already name the URL)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None:
            text += f": {exc.filename}"
    elif isinstance(exc, trio.TooSlowError):
        text = str(exc) or "timed out"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# The errors a user can cause at run time, as opposed to bugs (which keep
# their traceback so they get reported).
RUNTIME_ERRORS = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    pt.PacketeerError,
)


def runtime_error(exc: BaseException) -> BaseException | None:
    """The first error inside *exc* if all of it is runtime failure, else None
    (a bug or a cancellation, which must propagate)."""
    errors = leaves(exc)
    if errors and all(isinstance(e, RUNTIME_ERRORS) for e in errors):
        return errors[0]
    return None


def usage_error(exc: BaseException) -> BaseException | None:
    """The first bad URL or usage mistake inside *exc*, if any."""
    found = [e for e in leaves(exc) if isinstance(e, (pt.InvalidURL, UsageError))]
    return found[0] if found else None

"""What the command line accepts: the parser, and the types that check values.

Every value-taking option has a checking ``type=`` (a :class:`Number`,
:func:`url_arg` or :func:`command_arg`), so a bad value is argparse's
one-line usage error naming the option, exit 2, before anything runs.
"""

from __future__ import annotations

import argparse
import math
import shlex
from typing import TYPE_CHECKING, NoReturn

import packeteer_trio as pt

from ._exit import EXIT_USAGE

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction["Parser"]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump), exit 2.

    ``commands`` maps subcommand names to their parsers (set by
    ``build_parser``), so that an unknown option is reported by the
    subcommand it was given to.
    """

    commands: dict[str, Parser]

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


class Number:
    """argparse ``type=`` for a finite number within bounds.

    ``Number(float, above=0)`` takes ``2.5`` and refuses ``0``, ``-1``,
    ``nan``, ``inf`` and ``abc``; ``Number(int, least=1)`` takes whole numbers
    only.
    """

    def __init__(
        self,
        kind: type[int] | type[float],
        *,
        least: float | None = None,
        above: float | None = None,
        most: float | None = None,
    ) -> None:
        self.kind, self.least, self.above, self.most = kind, least, above, most

    def describe(self) -> str:
        """What is accepted, e.g. 'a number above 0'."""
        text = "a whole number" if self.kind is int else "a number"
        bounds = [
            f"{name} {int(bound) if bound == int(bound) else bound}"
            for name, bound in (
                ("at least", self.least),
                ("above", self.above),
                ("at most", self.most),
            )
            if bound is not None
        ]
        return " ".join([text, " and ".join(bounds)]) if bounds else text

    def __call__(self, text: str) -> float:
        try:
            value = self.kind(text)  # int() refuses "1.5" and > 4300 digits
        except ValueError:
            value = math.nan
        if not (
            (self.kind is int or math.isfinite(value))
            and (self.least is None or value >= self.least)
            and (self.above is None or value > self.above)
            and (self.most is None or value <= self.most)
        ):
            shown = text if len(text) <= 40 else f"{text[:37]}..."
            raise argparse.ArgumentTypeError(
                f"must be {self.describe()}, not {shown!r}"
            )
        return value

    def __repr__(self) -> str:
        return f"Number({self.describe()})"


SECONDS = Number(float, above=0)  # timeouts: 0 would fail at once
SECONDS_OR_0 = Number(float, least=0)  # waits: 0 = do not wait
COUNT = Number(int, least=1)


def url_arg(text: str) -> pt.URL:
    """argparse ``type=`` for URLs: a bad URL becomes a usage error."""
    try:
        return pt.URL.parse(text)
    except pt.InvalidURL as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def command_arg(text: str) -> list[str]:
    """argparse ``type=`` for ``--exec CMD``: split as a POSIX shell would
    (quotes, backslashes), but no shell runs it."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:  # "No closing quotation"
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if not argv:
        raise argparse.ArgumentTypeError("the command is empty")
    return argv

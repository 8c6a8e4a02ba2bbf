"""What the subcommands tell on stderr, one line each, by verbosity.

``-q`` keeps only what must be seen (``listening on URL``, the error that
ends the command); the default adds what a server's operator wants (echo and
relay: connections, per-connection errors); ``-v`` adds the details netcat's
``-v`` gives (local addresses, every peer, bytes each way, a child's exit
status). The library's own log records get the same one-line treatment.
"""

from __future__ import annotations

import argparse
import logging
import sys


class Log:
    """stderr messages at three levels: ``always``, ``info``, ``detail``."""

    def __init__(
        self, *, quiet: bool = False, verbose: bool = False, prefix: str = ""
    ) -> None:
        self.quiet: bool = quiet
        self.verbose: bool = verbose
        self.prefix = prefix  # "worker 2: " in echo's worker processes

    @classmethod
    def of(cls, args: argparse.Namespace) -> Log:
        return cls(
            quiet=getattr(args, "quiet", False),
            verbose=getattr(args, "verbose", False),
        )

    def always(self, message: str) -> None:
        print(self.prefix + message, file=sys.stderr, flush=True)

    def info(self, message: str) -> None:
        """Shown unless ``-q``."""
        if not self.quiet:
            self.always(message)

    def detail(self, message: str) -> None:
        """Shown with ``-v`` only."""
        if self.verbose:
            self.always(message)


class _OneLine(logging.Formatter):
    """The package's log records as one line each: the message, never the
    traceback that came with it (``accept failed …`` names the errno)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        return self._prefix + " ".join(record.getMessage().split())


def log_one_line(prog: str) -> None:
    """Send the ``packeteer_trio`` logger (INFO and up) to stderr, one line
    per record (without a handler, logging's last resort prints tracebacks)."""
    logger = logging.getLogger("packeteer_trio")
    if not any(isinstance(h.formatter, _OneLine) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLine(f"{prog}: "))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)

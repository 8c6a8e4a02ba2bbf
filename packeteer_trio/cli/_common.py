"""What every subcommand shares: URL arguments, exit codes, errors, stdio, signals."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import stat
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn

import trio

from .._errors import InvalidURL, PacketeerError
from .._registry import lookup
from .._url import URL

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

Command = Callable[[argparse.Namespace], Awaitable[int]]

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction["Parser"]


def _micro() -> str:
    # "µs" unless stdout cannot encode it (an ASCII-only locale).
    try:
        "µ".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "us"
    return "µs"


US = _micro()


class UsageError(PacketeerError):
    """A usage mistake only found once running (e.g. a stream URL where a
    datagram URL is needed): reported in one line, exit 2."""


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
    only. A refusal is argparse's one-line usage error naming the option
    (exit 2), before anything runs.
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


def url_arg(text: str) -> URL:
    """argparse ``type=`` for URLs: a bad URL becomes a usage error."""
    try:
        return URL.parse(text)
    except InvalidURL as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def is_datagram(url: URL) -> bool:
    """True if the URL means datagrams (udp://, local://…?behaviour=datagram)."""
    return url.behaviour == "datagram" or "stream" not in lookup(url.scheme).behaviours


def can_send(stream: trio.abc.Stream) -> bool:
    # PipeStream knows its direction (a FIFO end is one-way); sockets are two-way.
    return bool(getattr(stream, "can_send", True))


def can_receive(stream: trio.abc.Stream) -> bool:
    return bool(getattr(stream, "can_receive", True))


def log(message: str, *, quiet: bool = False) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def mb_per_s(nbytes: int, seconds: float) -> float:
    """Decimal megabytes per second (MB = 10**6 bytes)."""
    return nbytes / 1e6 / seconds if seconds > 0 else 0.0


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
    PacketeerError,
)


def runtime_error(exc: BaseException) -> BaseException | None:
    """The first error inside *exc* if all of it is runtime failure, else None
    (a bug or a cancellation, which must propagate)."""
    errors = leaves(exc)
    if errors and all(isinstance(e, RUNTIME_ERRORS) for e in errors):
        return errors[0]
    return None


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


def run(command: Command, args: argparse.Namespace, prog: str) -> int:
    """Run an async subcommand under trio and turn its outcome into an exit code.

    SIGINT/SIGTERM cancel the command cleanly (no traceback); servers then
    exit 0 (``args.interrupt_code``), one-shot commands 130.
    """
    log_one_line(prog)
    try:
        return trio.run(_interruptible, command, args)
    except KeyboardInterrupt:  # before our signal handler was installed
        return EXIT_INTERRUPTED
    except BaseException as exc:
        usage = [e for e in leaves(exc) if isinstance(e, (InvalidURL, UsageError))]
        error = usage[0] if usage else runtime_error(exc)
        if error is None:
            raise
        print(f"{prog}: error: {describe(error)}", file=sys.stderr, flush=True)
        return EXIT_USAGE if usage else EXIT_FAILURE


async def _interruptible(command: Command, args: argparse.Namespace) -> int:
    interrupted = False
    result = EXIT_OK
    signals = [signal.SIGINT, signal.SIGTERM]
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal interrupted
                async for _ in received:
                    interrupted = True
                    nursery.cancel_scope.cancel()
                    return

            async def main() -> None:
                nonlocal result
                result = await command(args)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(main)
    if interrupted:
        code: int = getattr(args, "interrupt_code", EXIT_INTERRUPTED)
        return code
    return result


# -- stdin / stdout as trio byte sources and sinks ---------------------------


if sys.platform == "win32":  # pragma: no cover

    def _pollable(fd: int) -> trio.abc.Stream | None:
        return None  # no FdStream: stdio goes through threads

else:

    def _pollable(fd: int) -> trio.abc.Stream | None:
        """A trio stream over a copy of *fd* if it is a pipe or a socket.

        Those can wait in trio's I/O loop. A tty is shared with the shell
        (non-blocking mode would leak to it) and a regular file is never "not
        ready", so those go through a worker thread or plain writes instead.
        """
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return None
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            return trio.lowlevel.FdStream(os.dup(fd))
        return None


class StdinSource:
    """``await read()`` returns the next chunk of stdin, ``b""`` at end of file."""

    def __init__(self) -> None:
        self._fd = -1 if sys.stdin is None else sys.stdin.fileno()
        self._stream = _pollable(self._fd) if self._fd >= 0 else None

    async def read(self, max_bytes: int = 65536) -> bytes | bytearray:
        if self._stream is not None:
            return await self._stream.receive_some(max_bytes)
        if self._fd < 0:
            await trio.lowlevel.checkpoint()
            return b""
        # Abandoning a thread blocked in read() lets Ctrl-C end us at once.
        return await trio.to_thread.run_sync(
            os.read, self._fd, max_bytes, abandon_on_cancel=True
        )

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()


class StdoutSink:
    """``await write(data)`` writes all of *data* to stdout."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._fd = sys.stdout.fileno()
        self._stream = _pollable(self._fd)

    async def write(self, data: bytes | bytearray) -> None:
        try:
            if self._stream is not None:
                await self._stream.send_all(data)
                return
            view = memoryview(data)
            while view:  # a tty or a file: fast, and blocking is what it does
                view = view[os.write(self._fd, view) :]
        except (trio.BrokenResourceError, BrokenPipeError) as exc:
            raise trio.BrokenResourceError("stdout was closed by its reader") from exc
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()


class AsyncLines:
    """Iterate stdin line by line (without the line ending)."""

    def __init__(self, source: StdinSource) -> None:
        self._source = source
        self._buffer = b""
        self._eof = False

    def __aiter__(self) -> AsyncLines:
        return self

    async def __anext__(self) -> bytes:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line, self._buffer = (
                    self._buffer[:newline],
                    self._buffer[newline + 1 :],
                )
                return line.removesuffix(b"\r")
            if self._eof:
                if self._buffer:
                    line, self._buffer = self._buffer, b""
                    return line
                raise StopAsyncIteration
            chunk = await self._source.read()
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True

"""Running a subcommand: trio, Ctrl-C and SIGTERM, the outcome as an exit code."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable

import trio

from ._errors import describe, runtime_error, usage_error
from ._exit import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from ._log import log_one_line

Command = Callable[[argparse.Namespace], Awaitable[int]]


def run(command: Command, args: argparse.Namespace, prog: str) -> int:
    """Run an async subcommand under trio and turn its outcome into an exit code.

    SIGINT/SIGTERM cancel the command cleanly (no traceback); servers then
    exit 0 (``args.interrupt_code``), one-shot commands 130. A bad URL or
    usage found while running is exit 2, a runtime failure exit 1, each one
    line; anything else is a bug and keeps its traceback.
    """
    log_one_line(prog)
    try:
        return trio.run(_interruptible, command, args)
    except KeyboardInterrupt:  # before our signal handler was installed
        return EXIT_INTERRUPTED
    except BaseException as exc:
        usage = usage_error(exc)
        error = usage or runtime_error(exc)
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

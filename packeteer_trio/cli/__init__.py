"""The ``packeteer`` command line: netcat and socat for every scheme at once.

Subcommands live in one module each (demo, echo, cat, relay, bench; a
package with a stream and a datagram half where it is large); every one has
``add_parser(subparsers)``, which registers its arguments and its async
``run(args) -> int``. The underscore modules are what they share, one thing
each: ``_args`` (parser, value types), ``_run`` (trio, signals, exit codes
from ``_exit``), ``_errors``, ``_log``, ``_stdio``, ``_streams``, ``_urls``,
``_units``, ``_progress`` and ``_splice`` (relay's zero-copy path). They use
the package's public API (``import packeteer_trio as pt``). Exit codes: 0 ok,
1 runtime failure, 2 usage or bad URL (one line on stderr, never a
traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import packeteer_trio as pt

from . import bench, cat, demo, echo, relay
from ._args import Parser
from ._exit import EXIT_USAGE
from ._run import run

__all__ = ["build_parser", "main"]

_COMMANDS = (demo, echo, cat, relay, bench)


def build_parser() -> Parser:
    parser = Parser(
        prog="packeteer",
        description="One socket-like command line for every kind of IPC, chosen "
        "by URL: tcp://, tcp4://, tcp6://, udp://, udp4://, udp6://, local://, "
        "fifo://, anon://.",
        epilog="Run 'packeteer COMMAND --help' for a command's options.",
    )
    parser.add_argument(
        "--version", action="version", version=f"packeteer {pt.__version__}"
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=Parser
    )
    for module in _COMMANDS:
        module.add_parser(subparsers)
    parser.commands = subparsers.choices
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse *argv* (default ``sys.argv[1:]``), run the subcommand, return the
    exit code."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand they were given to, with its prog
        where = parser.commands.get(args.command or "", parser)
        where.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        print(
            "packeteer: error: choose a command: demo, echo, cat, relay, bench "
            "(see --help)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return run(args.run, args, f"packeteer {args.command}")

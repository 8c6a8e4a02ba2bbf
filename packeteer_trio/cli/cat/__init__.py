"""``packeteer cat URL``: netcat for every scheme.

stdin goes to the connector and the connector to stdout; with ``--exec CMD``
a child process takes stdin's and stdout's place (``nc -e``, socat
``EXEC:``). Stream URLs: :mod:`._stream` (stdin/stdout) and :mod:`._exec`
(a child per connection); datagram URLs go line by line: :mod:`._datagram`.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
from typing import TYPE_CHECKING

from .._args import SECONDS, SECONDS_OR_0, command_arg, url_arg
from .._errors import UsageError
from .._exit import EXIT_OK
from .._urls import is_datagram
from ._datagram import run_datagrams
from ._stream import run_streams

if TYPE_CHECKING:
    from .._args import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "cat",
        help="stdin/stdout to a connector (netcat for every scheme)",
        description="Connect to URL (or with --listen, accept a connection on "
        "it), copy stdin to it and what arrives to stdout. End of file on stdin "
        "half-closes the connection; cat exits when the peer has finished. "
        "Datagram URLs send one datagram per line.",
    )
    parser.add_argument("url", type=url_arg, metavar="URL")
    parser.add_argument(
        "-l",
        "--listen",
        action="store_true",
        help="listen on URL and serve one connection (prints 'listening on URL' "
        "on stderr); for datagrams, answer whoever sent last",
    )
    parser.add_argument(
        "-k",
        "--keep-open",
        action="store_true",
        help="with --listen: accept the next connection when one ends, one at "
        "a time (nc -k); with --exec, connections are served concurrently",
    )
    parser.add_argument(
        "-e",
        "--exec",
        type=command_arg,
        metavar="CMD",
        help="run CMD for each connection with its stdin and stdout on it "
        "(nc -e, socat EXEC:); CMD is split like a shell would, but no shell "
        "runs it (use 'sh -c \"...\"' for pipes)",
    )
    parser.add_argument(
        "-w",
        "--wait",
        type=SECONDS,
        metavar="SECONDS",
        help="give up connecting after this long, and end a connection once "
        "this long passes without data either way (nc -w): exit 1",
    )
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument(
        "--send-only",
        action="store_true",
        help="only send (socat -u): what arrives is read and dropped",
    )
    direction.add_argument(
        "--receive-only",
        action="store_true",
        help="only receive (nc -d): stdin is not read, the sending side is "
        "half-closed at once where the URL can",
    )
    parser.add_argument(
        "--reply",
        type=url_arg,
        metavar="URL",
        help="receive on this second URL instead (listen on it, or with --listen "
        "connect to it): two one-way FIFOs make a two-way channel",
    )
    parser.add_argument(
        "--local",
        type=url_arg,
        metavar="URL",
        help="datagrams: the local address to bind (default: ephemeral port, or a "
        "temporary path for local://)",
    )
    parser.add_argument(
        "--linger",
        type=SECONDS_OR_0,
        default=1.0,
        metavar="SECONDS",
        help="after end of stdin, wait until this long passes without replies, "
        "then stop: for datagrams, --send-only, and streams that cannot "
        "half-close such as tls+tcp:// (default: %(default)s)",
    )
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="log less")
    talk.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log on stderr: local address, each peer as it connects and "
        "leaves, bytes each way, CMD's exit status",
    )
    parser.set_defaults(run=run, interrupt_code=EXIT_OK)


def check(args: argparse.Namespace) -> None:
    """Refuse the combinations that mean nothing, before anything opens."""
    if args.keep_open and not args.listen:
        raise UsageError("-k/--keep-open needs -l/--listen")
    if args.reply is not None and args.keep_open:
        raise UsageError("--reply cannot be combined with -k/--keep-open")
    if args.reply is not None and (args.send_only or args.receive_only):
        raise UsageError(
            "--reply already sets the directions: drop --send-only/--receive-only"
        )
    if args.exec is not None:
        if is_datagram(args.url):
            raise UsageError(f"{args.url}: --exec needs a stream URL")
        if shutil.which(args.exec[0]) is None:
            raise UsageError(
                f"--exec {shlex.join(args.exec)}: command not found: {args.exec[0]}"
            )


async def run(args: argparse.Namespace) -> int:
    check(args)
    if is_datagram(args.url):
        return await run_datagrams(args)
    return await run_streams(args)

"""A worker process: ``python -m packeteer_trio.workers SPEC``.

Started by :func:`packeteer_trio.workers.run`, never by hand. In order:

1. Die with the supervisor: on Linux PR_SET_PDEATHSIG (SIGKILL), so even a
   worker stuck in a busy loop goes; everywhere the lifeline, whose end of
   file cancels the worker.
2. The shared listening sockets, if any, are moved to descriptors 3, 4, …
   and announced with ``LISTEN_FDS``, ``LISTEN_PID`` and ``LISTEN_FDNAMES``,
   exactly as systemd passes sockets: the worker's URL is then
   ``fd://listen/NAME``, and the same worker code runs under systemd.
3. Run the target until it returns, the lifeline closes, or SIGTERM (or
   SIGINT) arrives; tell the supervisor once it serves.

Exit status: 0 when stopped, the target's own for ``SystemExit``, 1 with the
traceback on stderr when it raised.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import sys
import traceback
from collections.abc import Sequence

import trio

from .. import URL
from ._process import Argument, Target, load_target

assert sys.platform != "win32", "workers are POSIX-only"

LISTEN_FDS_START = 3
PR_SET_PDEATHSIG = 1


def _die_with(supervisor: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor:
        os._exit(0)  # it died before we could ask to die with it


def _place(lifeline: int, shared: Sequence[int], name: str) -> socket.socket:
    """Shared sockets to 3, 4, … (as systemd); the lifeline anywhere above."""
    if shared:
        above = LISTEN_FDS_START + len(shared)
        moved = {fd: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, above) for fd in shared}
        moved[lifeline] = fcntl.fcntl(lifeline, fcntl.F_DUPFD_CLOEXEC, above)
        for fd in moved:
            os.close(fd)
        for offset, fd in enumerate(shared):
            wanted = LISTEN_FDS_START + offset
            try:
                os.fstat(wanted)
            except OSError:
                pass
            else:
                raise RuntimeError(
                    f"descriptor {wanted} is taken: cannot place the sockets"
                )
            os.dup2(moved[fd], wanted)
            os.close(moved[fd])
        lifeline = moved[lifeline]
        os.environ["LISTEN_FDS"] = str(len(shared))
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDNAMES"] = ":".join([name] * len(shared))
    os.set_inheritable(lifeline, False)
    return socket.socket(fileno=lifeline)


async def _serve(
    target: Target, url: URL, args: list[Argument], lifeline: socket.socket
) -> None:
    line = trio.socket.from_stdlib_socket(lifeline)
    async with trio.open_nursery() as nursery:
        stop = nursery.cancel_scope

        async def watch_lifeline() -> None:
            while await line.recv(4096):
                pass
            stop.cancel()  # the supervisor is gone

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    stop.cancel()

        async def run_target(task_status: trio.TaskStatus[object]) -> None:
            await target(url, *args, task_status=task_status)
            stop.cancel()  # it returned: this worker is done

        nursery.start_soon(watch_lifeline)
        nursery.start_soon(watch_signals)
        value = await nursery.start(run_target)
        ready = {"ready": [str(url) for url in _served(value)]}
        with trio.CancelScope(shield=True):  # said even if it fails at once
            await line.send(json.dumps(ready).encode() + b"\n")


def _served(value: object) -> list[URL]:
    """The ``url`` of what ``task_status.started()`` got (listeners, datagram
    sockets): ``serve`` gives a list of listeners."""
    items = value if isinstance(value, list | tuple) else [value]
    found = [getattr(item, "url", None) for item in items]
    return [url for url in found if isinstance(url, URL)]


def _leaves(exc: BaseException) -> list[BaseException]:
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, list | tuple):
        return [leaf for group in inner for leaf in _leaves(group)]
    return [exc]


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print(
            "python -m packeteer_trio.workers: started by "
            "packeteer_trio.workers.run(), not by hand",
            file=sys.stderr,
        )
        return 2
    spec = json.loads(argv[0])
    _die_with(spec["supervisor"])
    lifeline = _place(spec["lifeline"], spec["shared"], spec["name"])
    sys.path[:] = spec["path"]
    try:
        target = load_target(spec["target"])
        trio.run(_serve, target, URL.parse(spec["url"]), spec["args"], lifeline)
    except BaseException as exc:
        leaves = _leaves(exc)
        if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            return 0
        exits = [leaf for leaf in leaves if isinstance(leaf, SystemExit)]
        if len(exits) == len(leaves):
            code = exits[0].code
            return code if isinstance(code, int) else 1
        shown = leaves[0] if len(leaves) == 1 else exc
        traceback.print_exception(shown)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

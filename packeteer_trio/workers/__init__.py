"""Run one server in N worker processes: every core serves.

One trio process uses one core. :func:`run` starts *N* processes of the same
server and keeps them running (POSIX):

    from packeteer_trio import workers

    async def serve_one(url, *, task_status=trio.TASK_STATUS_IGNORED):
        await packeteer_trio.serve(url, handler, task_status=task_status)

    trio.run(workers.run, serve_one, "tcp://0.0.0.0:8080?reuseport=1", 4)

Two routes, chosen by the URL: with ``?reuseport=1`` each worker binds its
own socket (SO_REUSEPORT; the kernel balances); without it the supervisor
binds once and the workers share that socket, as systemd's socket
activation passes one (any scheme with a socket, also where SO_REUSEPORT is
missing). See docs/scale.md. This module is built on the public API; the
core never imports it.
"""

from ._process import ENV_INDEX, Argument, Target
from ._supervisor import SHARED_NAME, Supervisor, WorkerError, run

__all__ = [
    "ENV_INDEX",
    "SHARED_NAME",
    "Argument",
    "Supervisor",
    "Target",
    "WorkerError",
    "run",
]

"""One tcp echo server in 1 and in 2 worker processes (``packeteer_trio.workers``).

A separate load client (:mod:`._load_client`: epoll, 32 connections, one
64-byte request in flight on each) drives the group for a fixed time and
reports requests per second and the CPU it used itself; the workers' CPU
over the same run is read from ``/proc``. Two routes for two workers:
``?reuseport=1`` (each worker its own socket, the kernel hashes the
connections over them) and the shared socket (the supervisor's, inherited:
whoever accepts first takes the connection).

There is no target: the machine these figures come from has 2 cores, and
the client needs most of one, so a second worker has at most what is left
of the other. The CPU rows say where the time went; their ratio is only
descriptive (cores busy with 2 workers / with 1).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import trio

import packeteer_trio as pt
from packeteer_trio import workers

from ._common import Config, Row, measure, rows_from
from ._loops import echo

assert sys.platform.startswith("linux"), "Linux only: /proc and epoll"

CONNECTIONS = 32
SECONDS = 1.0
_TICKS = os.sysconf("SC_CLK_TCK")


async def echo_worker(
    url: pt.URL, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
) -> None:
    """What each worker runs."""
    await pt.serve(url, echo, task_status=task_status)


class Client:
    """The load generator process; one command per measurement."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", f"{__package__}._load_client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def run(self, url: pt.URL, seconds: float) -> tuple[float, float, float]:
        """Requests/s, the client's CPU seconds and its wall seconds."""
        assert self._process.stdin is not None and self._process.stdout is not None
        command = f"{url.host} {url.port} {CONNECTIONS} {seconds}\n"
        self._process.stdin.write(command)
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the load client died")
        rate, cpu, wall = map(float, line.split())
        return rate, cpu, wall

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(10)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def one_run(
    url: str,
    count: int,
    client: Client,
    seconds: float,
    cpu: dict[str, list[float]],
) -> float:
    """Requests/s of *count* workers on *url*; cores busy into *cpu*."""

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            group = await nursery.start(
                functools.partial(workers.run, echo_worker, url, count)
            )
            pids = [pid for pid in group.pids if pid is not None]
            before = sum(_cpu_seconds(pid) for pid in pids)
            rate, client_cpu, wall = await trio.to_thread.run_sync(
                client.run, group.urls[0], seconds
            )
            server_cpu = sum(_cpu_seconds(pid) for pid in pids) - before
            nursery.cancel_scope.cancel()
        cpu["server"].append(server_cpu / wall)
        cpu["client"].append(client_cpu / wall)
        return rate

    return trio.run(main)


CONTENDERS = {
    "1 worker": ("tcp://127.0.0.1:0", 1),
    "2 workers, reuseport": ("tcp://127.0.0.1:0?reuseport=1", 2),
    "2 workers, shared socket": ("tcp://127.0.0.1:0", 2),
}


def run(config: Config) -> list[Row]:
    seconds = round(SECONDS * min(config.scale, 1.0), 2) or 0.1
    client = Client()
    cpu: dict[str, dict[str, list[float]]] = {
        name: {"server": [], "client": []} for name in CONTENDERS
    }
    try:
        contenders = {
            name: functools.partial(one_run, url, count, client, seconds, cpu[name])
            for name, (url, count) in CONTENDERS.items()
        }
        results = measure(config, contenders, label="workers")
    finally:
        client.close()
    others = [name for name in CONTENDERS if name != "1 worker"]
    rows: list[Row] = []
    for name in others:
        rows += rows_from(
            "workers",
            f"tcp echo, {CONNECTIONS} connections, 64-byte requests",
            "req/s",
            results,
            name,
            [("1 worker", None)],
        )
    for side in ("server", "client"):
        busy = {name: cpu[name][side] for name in CONTENDERS}
        who = "the workers together" if side == "server" else "the load client"
        for name in others:
            rows += rows_from(
                "workers",
                f"CPU of {who}, cores busy",
                "cores",
                busy,
                name,
                [("1 worker", None)],
            )
    return rows

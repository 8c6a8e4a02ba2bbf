"""Load: many connections, a datagram flood, running out of descriptors.

- 1,000 connections held open at once by ``serve()`` (tcp and local), each
  doing 100 echo round trips: 0 errors, and the server really holds all
  1,000 at once (the clients start only when it does).
- A UDP server under a flood of 100,000 datagrams from another process keeps
  answering probes and accounts for every datagram: what it received plus
  what the kernel dropped for lack of buffer room equals what was sent.
- EMFILE: a server in a subprocess with a low RLIMIT_NOFILE keeps serving
  once descriptors free up, and logs each burst of failed accepts once.

Marked ``slow`` so they can be selected (``-m slow``) or left out
(``-m "not slow"``); CI runs them all.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import packeteer_trio as pt

from .conftest import open_fds

pytestmark = pytest.mark.slow
needs_af_unix = pytest.mark.posix_only(reason="local:// (AF_UNIX) is POSIX-only")

CONNECTIONS = 1000
ROUND_TRIPS = 100
FLOOD = 100_000


@pytest.fixture
def enough_fds() -> Iterator[None]:
    """Raise the soft RLIMIT_NOFILE so that both ends of 1,000 connections fit
    (Windows has no such limit)."""
    if sys.platform == "win32":
        yield
        return
    import resource

    needed = 2 * CONNECTIONS + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("scheme", ["tcp", pytest.param("local", marks=needs_af_unix)])
def test_thousand_concurrent_connections(
    scheme: str, tmp_path: Path, enough_fds: None
) -> None:
    url = "tcp://127.0.0.1:0" if scheme == "tcp" else f"local://{tmp_path}/load.sock"
    errors: list[BaseException] = []
    counts = {"active": 0, "peak": 0, "round_trips": 0}

    async def echo(stream: pt.Stream) -> None:
        counts["active"] += 1
        counts["peak"] = max(counts["peak"], counts["active"])
        if counts["active"] == CONNECTIONS:
            everyone_in.set()
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
        finally:
            counts["active"] -= 1

    async def client(index: int, target: pt.URL) -> None:
        try:
            async with await pt.connect(target) as stream:
                await everyone_in.wait()  # all 1,000 held by the server at once
                for turn in range(ROUND_TRIPS):
                    message = b"%06d:%03d;" % (index, turn)
                    await stream.send_all(message)
                    echoed = b""
                    while len(echoed) < len(message):
                        chunk = await stream.receive_some()
                        if not chunk:
                            raise AssertionError(f"client {index}: early EOF")
                        echoed += chunk
                    if echoed != message:
                        raise AssertionError(f"client {index}: {echoed!r}")
                    counts["round_trips"] += 1
        except Exception as exc:  # counted, not raised: the figure is "0 errors"
            errors.append(exc)

    async def main() -> float:
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                [listener] = await nursery.start(pt.serve, url, echo)
                started = time.perf_counter()
                async with trio.open_nursery() as clients:
                    for index in range(CONNECTIONS):
                        clients.start_soon(client, index, listener.url)
                elapsed = time.perf_counter() - started
                nursery.cancel_scope.cancel()
        return elapsed

    everyone_in = trio.Event()
    before = open_fds()
    elapsed = trio.run(main)
    print(
        f"\nFIGURE load [{scheme}]: {CONNECTIONS} connections x {ROUND_TRIPS} round "
        f"trips = {counts['round_trips']}, peak concurrent {counts['peak']}, "
        f"{len(errors)} errors, {elapsed:.2f} s"
    )
    assert errors == []
    assert counts["round_trips"] == CONNECTIONS * ROUND_TRIPS
    assert counts["peak"] == CONNECTIONS
    assert open_fds() == before
    assert not list(tmp_path.iterdir())


# --- a UDP flood -------------------------------------------------------------

_FLOODER = textwrap.dedent(
    """
    import socket, sys
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    payload, sent = b"flood" + b"." * 27, 0
    for _ in range(count):
        try:
            sock.send(payload)
            sent += 1
        except OSError:  # ENOBUFS and the like: not sent, not counted
            pass
    print(sent)
    """
)


def _kernel_drops(port: int) -> int | None:
    """Datagrams the kernel dropped for the UDP socket bound to *port* (Linux)."""
    try:
        with open("/proc/net/udp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == port:
                    return int(fields[-1])
    except OSError:
        return None
    return None


def _backlog_drops() -> int:
    """Packets every CPU's input backlog dropped so far (Linux), else 0."""
    try:
        with open("/proc/net/softnet_stat") as table:
            return sum(int(line.split()[1], 16) for line in table)
    except OSError:
        return 0


def test_udp_server_under_a_flood() -> None:
    async def main() -> dict[str, float]:
        figures: dict[str, float] = dict.fromkeys(
            ["received", "pings", "pongs during", "pongs after"], 0
        )
        async with (
            await pt.open_datagram("udp4://127.0.0.1:0") as server,
            await pt.open_datagram("udp4://127.0.0.1:0") as prober,
        ):

            async def serve() -> None:
                while True:
                    batch = await server.receive_many(256)
                    figures["received"] += len(batch)
                    replies = [
                        (b"pong" + data[4:], sender)
                        for data, sender in batch
                        if data.startswith(b"ping")
                    ]
                    if replies:
                        await server.send_many(replies)

            async def ping(key: str, wait: float) -> None:
                figures["pings"] += 1
                await prober.send_to(b"ping%d" % figures["pings"], server.url)
                with trio.move_on_after(wait):
                    while True:
                        data, _ = await prober.receive_from()
                        assert data.startswith(b"pong")
                        figures[key] += 1
                        if key == "pongs after":
                            return

            async def probe(done: trio.Event) -> None:
                while not done.is_set():
                    await ping("pongs during", 0.005)

            flooder = [sys.executable, "-S", "-c", _FLOODER, "127.0.0.1"]
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(serve)
                    async with trio.open_nursery() as probing:
                        flood_over = trio.Event()
                        probing.start_soon(probe, flood_over)
                        started = time.perf_counter()
                        figures["backlog drops"] = -_backlog_drops()
                        result = await trio.run_process(
                            [*flooder, str(server.url.port), str(FLOOD)],
                            capture_stdout=True,
                        )
                        figures["flood seconds"] = time.perf_counter() - started
                        figures["backlog drops"] += _backlog_drops()
                        flood_over.set()
                    figures["sent"] = int(result.stdout)
                    # Still answering afterwards: within a second, every time.
                    for _ in range(10):
                        await ping("pongs after", 1.0)
                    await trio.sleep(0.1)  # let the last datagrams be counted
                    nursery.cancel_scope.cancel()
            assert server.url.port is not None
            drops = _kernel_drops(server.url.port)
            figures["dropped"] = -1 if drops is None else drops
        return figures

    figures = trio.run(main)
    print(
        f"\nFIGURE udp flood: sent {figures['sent']:.0f} + {figures['pings']:.0f} "
        f"pings in {figures['flood seconds']:.2f} s; server received "
        f"{figures['received']:.0f}, kernel dropped {figures['dropped']:.0f}; "
        f"pongs during the flood {figures['pongs during']:.0f}, "
        f"after it {figures['pongs after']:.0f}/10"
    )
    assert figures["sent"] >= FLOOD * 0.99
    assert figures["received"] > 0
    assert figures["pongs during"] > 0, "answered while flooded"
    assert figures["pongs after"] == 10, "answers every probe once the flood ends"
    if figures["dropped"] >= 0:  # Linux: every datagram is accounted for
        total = figures["sent"] + figures["pings"]
        missing = total - figures["received"] - figures["dropped"]
        # Only a full input backlog (machine-wide, before any socket) may
        # drop a datagram without the socket counting it.
        assert 0 <= missing <= figures["backlog drops"]


# --- EMFILE ------------------------------------------------------------------

# The server: serve() with a few descriptors to spare, then the soft
# RLIMIT_NOFILE lowered so that only SPARE more fit. It echoes until its stdin
# closes, then prints what its logger said, as JSON.
_EMFILE_SERVER = textwrap.dedent(
    """
    import json, logging, os, resource, sys
    import trio
    import packeteer_trio as pt

    url, spare = sys.argv[1], int(sys.argv[2])
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append([record.levelname, self.format(record)])

    log = logging.getLogger("packeteer_trio")
    log.addHandler(Keep())
    log.setLevel(logging.INFO)

    async def echo(stream):
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data)

    async def main():
        control = trio.lowlevel.FdStream(os.dup(0))
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(pt.serve, url, echo)
            fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
            in_use = len(fds) - 1  # listdir's own descriptor is gone again
            limit = max(in_use + spare, max(fds))
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            print(listener.url, limit - in_use, flush=True)
            while await control.receive_some():
                pass
            nursery.cancel_scope.cancel()
        print(json.dumps(records), flush=True)

    trio.run(main)
    """
)

# The same server on the anyio face (anyio's trio backend, so the control
# pipe can stay a trio FdStream).
_EMFILE_SERVER_ANYIO = (
    _EMFILE_SERVER.replace(
        "import packeteer_trio as pt",
        "import anyio\nimport packeteer_trio.anyio_compat as pt",
    )
    .replace(
        """            while data := await stream.receive_some():
                await stream.send_all(data)""",
        """            async for data in stream:
                await stream.send(data)""",
    )
    .replace("trio.open_nursery() as nursery", "anyio.create_task_group() as nursery")
    .replace("trio.run(main)", 'anyio.run(main, backend="trio")')
)


@pytest.mark.posix_only(reason="RLIMIT_NOFILE (EMFILE) is POSIX-only")
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("face", ["trio", "anyio"])
@pytest.mark.parametrize("scheme", ["tcp4", "local"])
def test_emfile_keeps_serving_and_logs_once_per_burst(
    scheme: str, face: str, tmp_path: Path
) -> None:
    server = _EMFILE_SERVER if face == "trio" else _EMFILE_SERVER_ANYIO
    assert server.count("anyio") == (0 if face == "trio" else 4)
    url = "tcp4://127.0.0.1:0" if scheme == "tcp4" else f"local://{tmp_path}/m.sock"
    spare = 4

    async def main() -> tuple[list[list[str]], float]:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", server, url, str(spare)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        output = b""
        try:
            with trio.fail_after(30):
                while b"\n" not in output:
                    output += await process.stdout.receive_some()
                target, free = output.split(b"\n", 1)[0].decode().split()
                assert int(free) == spare
                started = time.perf_counter()
                await _two_bursts(pt.URL.parse(target), spare)
                elapsed = time.perf_counter() - started
                await process.stdin.aclose()
                while chunk := await process.stdout.receive_some():
                    output += chunk
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        return json.loads(output.decode().splitlines()[-1]), elapsed

    records, elapsed = trio.run(main)
    errors = [text for level, text in records if level == "ERROR"]
    recoveries = [text for level, text in records if level == "INFO"]
    attempts = [int(m.group(1)) for m in map(_ATTEMPTS.search, recoveries) if m]
    print(
        f"\nFIGURE emfile [{face} {scheme}]: 2 bursts, {sum(attempts)} failed accepts "
        f"({attempts}), {len(errors)} ERROR records, {len(recoveries)} recovery "
        f"records, every client served, {elapsed:.2f} s"
    )
    assert len(errors) == 2, errors  # once per burst, not per attempt
    assert all("EMFILE" in text and "Traceback" in text for text in errors)
    assert len(attempts) == 2 and all(count >= 3 for count in attempts), recoveries


_ATTEMPTS = re.compile(r"after (\d+) failed attempts")


async def _two_bursts(url: pt.URL, spare: int) -> None:
    """Exhaust the server's descriptors twice; each time, free some and check
    that every waiting client is then served."""

    async def echoed(stream: pt.Stream, message: bytes) -> bool:
        await stream.send_all(message)
        got = b""
        while len(got) < len(message):
            got += await stream.receive_some()
        return got == message

    held: list[pt.Stream] = []
    for burst in range(2):
        # *spare* - len(held) are served at once; two more must wait.
        waiting = [await pt.connect(url) for _ in range(spare - len(held) + 2)]
        served, pending = waiting[:-2], waiting[-2:]
        for index, stream in enumerate(served):
            assert await echoed(stream, b"served %d %d" % (burst, index))
        for stream in pending:
            await stream.send_all(b"pending")
        await trio.sleep(0.55)  # the server retries about every 100 ms
        for stream in pending:
            with trio.move_on_after(0.05) as scope:
                await stream.receive_some()
            assert scope.cancelled_caught, "not served while out of descriptors"
        # Free descriptors: the pending ones get in and are answered.
        for stream in held + served:
            await stream.aclose()
        held = []
        for stream in pending:
            got = b""
            while len(got) < len(b"pending"):
                got += await stream.receive_some()
            assert got == b"pending"
        held = pending
    for stream in held:
        await stream.aclose()

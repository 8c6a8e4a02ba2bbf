"""packeteer_trio.workers: one server in N processes, supervised.

Both routes: ``?reuseport=1`` (each worker binds its own socket) and the
shared socket (the supervisor binds, the workers inherit it as
``fd://listen/packeteer``). The targets are in _worker_targets.py; they
answer with their pid, so a client sees which process served it.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import packeteer_trio as pt
from packeteer_trio import workers

from . import _worker_targets as targets

posix_only = pytest.mark.posix_only(reason="worker processes are POSIX-only")

PID_ECHO = "tests._worker_targets:pid_echo"
WAIT = 30  # a safety net against a hang, not a measurement
HAS_REUSEPORT = hasattr(socket, "SO_REUSEPORT")
needs_reuseport = pytest.mark.skipif(
    not HAS_REUSEPORT, reason="this platform has no SO_REUSEPORT"
)


def gone(pid: int) -> bool:
    """Whether process *pid* has ended (a zombie nobody reaped counts)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


async def wait_until_gone(*pids: int) -> None:
    with trio.fail_after(WAIT):
        while not all(gone(pid) for pid in pids):
            await trio.sleep(0.02)


@asynccontextmanager
async def running(
    target: workers.Target | str,
    url: str,
    count: int,
    *,
    args: Sequence[workers.Argument] = (),
    restart_delay: float = 0.1,
    max_restart_delay: float = 10.0,
    stop_timeout: float = 5.0,
) -> AsyncIterator[workers.Supervisor]:
    """The group, started and serving; stopped (and checked gone) after."""
    run = functools.partial(
        workers.run,
        target,
        url,
        count,
        args=args,
        restart_delay=restart_delay,
        max_restart_delay=max_restart_delay,
        stop_timeout=stop_timeout,
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            supervisor: workers.Supervisor = await nursery.start(run)
        pids = [pid for pid in supervisor.pids if pid is not None]
        assert len(pids) == count, supervisor.pids
        yield supervisor
        pids += [pid for pid in supervisor.pids if pid is not None]
        nursery.cancel_scope.cancel()
    for pid in pids:
        assert gone(pid), f"worker {pid} outlived the supervisor"


class Client:
    """One connection to a pid-echo worker."""

    def __init__(self, stream: pt.Stream, pid: int, client_pid: int) -> None:
        self.stream, self.pid, self.client_pid = stream, pid, client_pid

    @classmethod
    async def connect(cls, url: pt.URL) -> Client:
        stream = await pt.connect(url)
        line = b""
        with trio.fail_after(WAIT):
            while not line.endswith(b"\n"):
                data = await stream.receive_some()
                assert data, f"{url}: closed before saying who answered"
                line += data
        pid, client_pid = map(int, line.split())
        return cls(stream, pid, client_pid)

    async def echoes(self, data: bytes) -> bool:
        """Whether the connection still echoes *data* (False once broken)."""
        try:
            await self.stream.send_all(data)
            got = b""
            with trio.fail_after(WAIT):
                while len(got) < len(data):
                    chunk = await self.stream.receive_some()
                    if not chunk:
                        return False
                    got += chunk
        except trio.BrokenResourceError:
            return False
        return got == data


async def clients_of_several(url: pt.URL, wanted: int = 2) -> list[Client]:
    """Connections, opened one by one and kept, until *wanted* processes
    answered (bounded: the kernel balances, so a few dozen suffice)."""
    clients: list[Client] = []
    for _ in range(200):
        clients.append(await Client.connect(url))
        if len({client.pid for client in clients}) >= wanted:
            return clients
    raise AssertionError(f"only {clients[0].pid} answered {len(clients)} connections")


# -- serving from several processes ----------------------------------------------


@posix_only
@needs_reuseport
@pytest.mark.trio
async def test_reuseport_tcp_four_workers_answer() -> None:
    url = "tcp://127.0.0.1:0?reuseport=1"
    async with running(PID_ECHO, url, 4) as supervisor:
        [bound] = supervisor.urls
        assert bound.scheme == "tcp4" and bound.port  # the port worker 0 picked
        clients = [await Client.connect(bound) for _ in range(40)]
        answered = {client.pid for client in clients}
        assert len(answered) > 1, answered
        assert answered <= set(supervisor.pids)
        assert os.getpid() not in answered
        for client in clients:
            assert await client.echoes(b"hello")
            await client.stream.aclose()


@posix_only
@needs_reuseport
@pytest.mark.trio
async def test_reuseport_udp_workers_answer() -> None:
    target = "tests._worker_targets:pid_datagrams"
    async with running(target, "udp4://127.0.0.1:0?reuseport=1", 4) as supervisor:
        answered = set()
        for _ in range(64):  # datagrams are spread by sender address
            async with await pt.connect_datagram(supervisor.urls[0]) as channel:
                await channel.send(b"who?")
                with trio.fail_after(WAIT):
                    answered.add(int(await channel.receive()))
        assert len(answered) > 1 and answered <= set(supervisor.pids), answered


@posix_only
@pytest.mark.trio
async def test_shared_local_socket_four_workers(tmp_path: Path) -> None:
    """The route without SO_REUSEPORT: one local:// socket, bound by the
    supervisor, inherited by every worker."""
    url = f"local://{tmp_path}/server.sock"
    busy = "tests._worker_targets:busy_pid_echo"
    async with running(busy, url, 4, args=[0.05]) as supervisor:
        assert supervisor.urls == [pt.URL.parse(url)]
        clients = await clients_of_several(supervisor.urls[0], wanted=2)
        for client in clients:
            # The worker sees this process as its peer...
            assert client.client_pid == os.getpid()
            # ...and this process sees the supervisor, which made the socket
            # and listened on it (SO_PEERCRED is taken at listen() time).
            if sys.platform.startswith("linux"):
                assert isinstance(client.stream, pt.SocketStream)
                assert client.stream.peer_credentials()[0] == os.getpid()
                assert client.pid != os.getpid()
            assert await client.echoes(b"x")
            await client.stream.aclose()
    assert not (tmp_path / "server.sock").exists()  # the supervisor's to remove


@posix_only
@pytest.mark.trio
async def test_shared_tcp_socket_two_workers() -> None:
    busy = "tests._worker_targets:busy_pid_echo"
    async with running(busy, "tcp://127.0.0.1:0", 2, args=[0.05]) as supervisor:
        clients = await clients_of_several(supervisor.urls[0], wanted=2)
        assert {client.pid for client in clients} == set(supervisor.pids)
        for client in clients:
            await client.stream.aclose()


@posix_only
@pytest.mark.trio
async def test_shared_datagram_socket(tmp_path: Path) -> None:
    url = f"local://{tmp_path}/dgram.sock?behaviour=datagram"
    target = "tests._worker_targets:pid_datagrams"
    async with running(target, url, 2) as supervisor:
        me = await pt.open_datagram(f"local://{tmp_path}/me.sock?behaviour=datagram")
        async with me:
            await me.send_to(b"who?", supervisor.urls[0])
            with trio.fail_after(WAIT):
                data, sender = await me.receive_from()
            assert int(data) in supervisor.pids
            assert sender == supervisor.urls[0]


# -- supervision -------------------------------------------------------------------


@posix_only
@needs_reuseport
@pytest.mark.trio
async def test_killed_worker_is_restarted_and_others_keep_their_connections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="packeteer_trio.workers")
    url = "tcp://127.0.0.1:0?reuseport=1"
    async with running(PID_ECHO, url, 4, restart_delay=0.05) as supervisor:
        clients = await clients_of_several(supervisor.urls[0], wanted=3)
        victim = clients[0].pid
        slot = supervisor.pids.index(victim)
        os.kill(victim, signal.Signals["SIGKILL"])
        await wait_until_gone(victim)
        survivors = [client for client in clients if client.pid != victim]
        assert survivors
        for client in survivors:
            assert await client.echoes(b"still here"), client.pid
        for client in clients:
            if client.pid == victim:
                assert not await client.echoes(b"dead")
        with trio.fail_after(WAIT):
            while supervisor.pids[slot] in (None, victim):
                await trio.sleep(0.02)
        assert supervisor.restarts == 1
        assert victim not in supervisor.pids
        # The new worker serves too, and the others still do.
        clients += [await Client.connect(supervisor.urls[0]) for _ in range(8)]
        for client in survivors:
            assert await client.echoes(b"and still")
        for client in clients:
            await client.stream.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"worker {slot} (pid {victim}) was killed by SIGKILL; restarting it in 0.05 s"
    ], warnings


@posix_only
@pytest.mark.trio
async def test_a_worker_that_always_crashes_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="packeteer_trio.workers")
    target = "tests._worker_targets:crashes_once_up"
    # A worker that served max_restart_delay seconds starts afresh; this one
    # serves for a moment only (however slow the machine, not 2 s).
    async with running(
        target, "tcp://127.0.0.1:0", 1, restart_delay=0.02, max_restart_delay=2.0
    ) as supervisor:
        with trio.fail_after(WAIT):
            while supervisor.restarts < 6:
                await trio.sleep(0.01)
    delays = [r.getMessage().rpartition(" in ")[2] for r in caplog.records][:6]
    assert delays == ["0.02 s", "0.04 s", "0.08 s", "0.16 s", "0.32 s", "0.64 s"]
    messages = [r.getMessage() for r in caplog.records]
    assert all("exited with status 1" in message for message in messages), messages


@posix_only
@pytest.mark.trio
async def test_a_worker_failing_at_start_fails_the_group(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(workers.WorkerError) as info:
        with trio.fail_after(WAIT):
            await workers.run(targets.fails_at_start, "tcp://127.0.0.1:0", 3)
    message = str(info.value)
    assert "exited with status 1 before it served" in message, message
    assert "RuntimeError: this worker cannot start" in capfd.readouterr().err


@posix_only
@pytest.mark.trio
async def test_a_worker_ignoring_sigterm_is_killed_on_stop() -> None:
    target = "tests._worker_targets:ignores_sigterm"
    async with running(target, "tcp://127.0.0.1:0", 2, stop_timeout=0.2):
        pass  # running() checks that both are gone after the stop


@posix_only
@pytest.mark.trio
async def test_a_worker_stops_when_its_lifeline_closes() -> None:
    """The portable guard (macOS, the BSDs): no PR_SET_PDEATHSIG needed, a
    worker whose supervisor's end of the lifeline closes stops by itself,
    cleanly (status 0: it was cancelled, not killed)."""
    from packeteer_trio.workers import _process

    spec: dict[str, object] = {
        "target": _process.target_spec(targets.pid_echo),
        "args": [],
        "name": workers.SHARED_NAME,
        "path": list(sys.path),
        "url": "tcp://127.0.0.1:0",
    }
    worker = _process.spawn(0, spec, [])
    try:
        with trio.fail_after(WAIT):
            [url] = await worker.ready() or [""]
            async with await pt.connect(url):  # it serves
                pass
            worker.lifeline.close()
            assert await worker.reaped() == 0
    finally:
        await worker.stop(0)


# -- wrong use ---------------------------------------------------------------------


@posix_only
@pytest.mark.trio
@pytest.mark.parametrize(
    ("target", "url", "count", "error", "complaint"),
    [
        (PID_ECHO, "tcp://127.0.0.1:0", 0, ValueError, "workers=0"),
        (PID_ECHO, "tcp://127.0.0.1:0", True, ValueError, "workers=True"),
        ("tests._worker_targets", "tcp://:0", 1, ValueError, "'package.module:"),
        ("tests.nosuch:f", "tcp://:0", 1, ValueError, "cannot import tests.nosuch"),
        ("tests._worker_targets:nosuch", "tcp://:0", 1, ValueError, "has no nosuch"),
        (
            PID_ECHO,
            "local:///x.sock?reuseport=1",
            1,
            pt.InvalidURL,
            "tcp:// and udp://",
        ),
        (PID_ECHO, "tcp://:0?reuseport=2", 1, pt.InvalidURL, "not a boolean"),
    ],
)
async def test_wrong_use_is_refused_before_any_process(
    target: str, url: str, count: int, error: type[Exception], complaint: str
) -> None:
    with pytest.raises(error, match=complaint.replace("?", r"\?")):
        await workers.run(target, url, count)


@posix_only
@pytest.mark.trio
async def test_a_nested_function_cannot_be_a_target() -> None:
    async def nested(url: pt.URL) -> None:
        raise AssertionError("never run")

    with pytest.raises(ValueError, match="top level of a module"):
        await workers.run(nested, "tcp://127.0.0.1:0", 1)


@posix_only
@pytest.mark.trio
async def test_a_fifo_has_no_socket_to_share(tmp_path: Path) -> None:
    with pytest.raises(pt.InvalidURL, match="no socket that worker processes"):
        await workers.run(PID_ECHO, f"fifo://{tmp_path}/fifo", 1)
    assert not (tmp_path / "fifo").exists()


@pytest.mark.skipif(sys.platform != "win32", reason="what Windows says")
@pytest.mark.trio
async def test_windows_says_posix_only() -> None:
    with pytest.raises(pt.PacketeerError, match="one server process per port"):
        await workers.run(PID_ECHO, "tcp://127.0.0.1:0", 2)


SUPERVISOR = """
import trio
from packeteer_trio import workers

async def main():
    async with trio.open_nursery() as nursery:
        target = "tests._worker_targets:wedged"
        group = await nursery.start(workers.run, target, "tcp://127.0.0.1:0", 2)
        print(*group.pids, flush=True)

trio.run(main)
"""


@pytest.mark.linux_only(reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sigkilled_supervisor_takes_even_wedged_workers_along() -> None:
    """Workers whose event loop is stuck cannot watch their lifeline; the
    kernel's parent-death signal still ends them."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root}
    with subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE, env=env, cwd=root
    ) as supervisor:
        assert supervisor.stdout is not None
        lines: list[bytes] = []
        try:
            while len(lines) < 3:  # the pids, and each worker's "wedged"
                ready, _, _ = select.select([supervisor.stdout], [], [], WAIT)
                assert ready, f"only {lines} after {WAIT} s"
                lines.append(supervisor.stdout.readline())
        finally:
            supervisor.kill()
    # The workers share the supervisor's stdout: one may say "wedged" before
    # the supervisor prints the pids.
    wedged = [line for line in lines if line.startswith(b"wedged")]
    (pid_line,) = [line for line in lines if line not in wedged]
    pids = [int(pid) for pid in pid_line.split()]
    try:
        assert sorted(int(line.split()[1]) for line in wedged) == sorted(pids)
        trio.run(wait_until_gone, *pids)
    finally:  # a failure leaves no wedged process behind either
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.Signals["SIGKILL"])

"""``packeteer echo URL --workers N``: the supervisor and its workers as
subprocesses, stopped as a user stops them (Ctrl-C) or killed outright."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from .test_cli import TIMEOUT, Proc, cli, running
from .test_workers import gone

posix_only = pytest.mark.posix_only(reason="worker processes are POSIX-only")
HAS_REUSEPORT = hasattr(socket, "SO_REUSEPORT")
needs_reuseport = pytest.mark.skipif(
    not HAS_REUSEPORT, reason="this platform has no SO_REUSEPORT"
)
WORKER_LINE = r"worker (\d+) \(pid (\d+)\): "


def started(proc: Proc) -> tuple[str, list[int]]:
    """The URL the group serves and the workers' pids, as the CLI says them."""
    url = proc.bound_url()
    pids = proc.wait_for(r"\d+ workers: pid ([\d, ]+)").group(1)
    return url, [int(pid) for pid in pids.split(", ")]


def wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + TIMEOUT  # a safety net, not a measurement
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < deadline, [pid for pid in pids if not gone(pid)]
        time.sleep(0.02)


def tcp_address(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("tcp4://").rpartition(":")
    return host, int(port)


def echo_once(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def serving_pids(proc: Proc, count: int) -> set[int]:
    """The pids of the workers that logged the last *count* connections."""
    found: list[int] = []
    while len(found) < count:
        match = proc.wait_for(WORKER_LINE + r"#\d+ connected")
        found.append(int(match.group(2)))
    return set(found)


@posix_only
@needs_reuseport
def test_reuseport_four_workers_answer_and_ctrl_c_leaves_none() -> None:
    with running("echo", "tcp://127.0.0.1:0?reuseport=1", "--workers", "4") as proc:
        url, pids = started(proc)
        assert len(set(pids)) == 4 and proc.popen.pid not in pids
        address = tcp_address(url)
        for index in range(40):
            with socket.create_connection(address, timeout=TIMEOUT) as sock:
                assert echo_once(sock, b"ping %d" % index) == b"ping %d" % index
        answered = serving_pids(proc, 40)
        assert len(answered) > 1 and answered <= set(pids), answered
        assert proc.stop(signal.SIGINT) == 0  # Ctrl-C: a server's clean stop
    wait_gone(pids)
    assert not [line for line in proc.stderr if "Traceback" in line], proc.stderr


@posix_only
@needs_reuseport
def test_a_killed_worker_is_restarted_and_the_others_keep_their_connections() -> None:
    with running("echo", "tcp://127.0.0.1:0?reuseport=1", "--workers", "3") as proc:
        url, pids = started(proc)
        address = tcp_address(url)
        # Connections kept open, until they are spread over two workers.
        held: list[tuple[socket.socket, int]] = []
        for _ in range(100):
            sock = socket.create_connection(address, timeout=TIMEOUT)
            assert echo_once(sock, b"hi") == b"hi"
            held.append((sock, serving_pids(proc, 1).pop()))
            if len({pid for _, pid in held}) >= 2:
                break
        victim = held[0][1]
        os.kill(victim, signal.Signals["SIGKILL"])
        match = proc.wait_for(r"worker (\d+) \(pid (\d+)\) was killed by SIGKILL")
        assert int(match.group(2)) == victim
        for sock, pid in held:
            if pid != victim:
                assert echo_once(sock, b"still here") == b"still here"
            else:
                assert echo_once(sock, b"gone") == b""
            sock.close()
        # The new worker is up: connections keep being answered.
        for _ in range(10):
            with socket.create_connection(address, timeout=TIMEOUT) as sock:
                assert echo_once(sock, b"after") == b"after"
    wait_gone(pids)


@posix_only
@pytest.mark.linux_only(reason="PR_SET_PDEATHSIG; elsewhere the lifeline")
def test_a_sigkilled_supervisor_leaves_no_worker(tmp_path: Path) -> None:
    url = f"local://{tmp_path}/echo.sock"
    with running("echo", url, "--workers", "2") as proc:
        _, pids = started(proc)
        proc.popen.kill()
        proc.popen.wait()
        wait_gone(pids)


@posix_only
def test_shared_local_socket(tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    with running("echo", f"local://{path}", "--workers", "2", "-v") as proc:
        url, pids = started(proc)
        assert url == f"local://{path}"
        family = getattr(socket, "AF_UNIX")  # noqa: B009 (not on Windows)
        with socket.socket(family) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(str(path))
            assert echo_once(sock, b"shared") == b"shared"
        assert serving_pids(proc, 1) <= set(pids)
        assert proc.stop(signal.SIGINT) == 0
    wait_gone(pids)
    assert not path.exists()


@posix_only
@needs_reuseport
def test_udp_reuseport_workers_echo() -> None:
    with running("echo", "udp4://127.0.0.1:0?reuseport=1", "--workers", "2") as proc:
        url, pids = started(proc)
        host, _, port = url.removeprefix("udp4://").rpartition(":")
        for index in range(8):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(TIMEOUT)
                sock.sendto(b"d%d" % index, (host, int(port)))
                assert sock.recv(100) == b"d%d" % index
    wait_gone(pids)


@posix_only
@pytest.mark.parametrize(
    ("args", "code", "complaint"),
    [
        (["--workers", "0"], 2, "--workers"),
        (["local:///tmp/x.sock?reuseport=1", "--workers", "2"], 2, "tcp:// and udp://"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], code: int, complaint: str) -> None:
    if not args[0].startswith("-"):
        command = ["echo", *args]
    else:
        command = ["echo", "tcp://127.0.0.1:0", *args]
    result = cli(*command)
    assert result.returncode == code, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and complaint in lines[0], lines


@posix_only
@needs_reuseport
def test_a_worker_that_cannot_bind_fails_in_two_lines() -> None:
    """Its own one-line error, then the supervisor's; exit 1, no traceback."""
    with socket.socket() as taken:  # bound without SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("echo", f"tcp://127.0.0.1:{port}?reuseport=1", "--workers", "2")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.decode().splitlines()
    assert not [line for line in lines if "Traceback" in line], lines
    assert any(
        re.match(WORKER_LINE + r"error: .*Address already in use", line)
        for line in lines
    ), lines
    assert re.search(r"error: worker \d \(pid \d+\) exited with status 1", lines[-1])


@pytest.mark.skipif(sys.platform != "win32", reason="what Windows says")
def test_windows_says_posix_only() -> None:  # pragma: no cover
    result = cli("echo", "tcp://127.0.0.1:0", "--workers", "2")
    assert result.returncode == 2 and b"POSIX" in result.stderr

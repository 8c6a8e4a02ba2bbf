"""The examples run end to end: echoserver + echoclient per scheme, scheduler style."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import posix_only
from .test_cli import ROOT, TIMEOUT, Proc, env

# Ctrl-C exits 0; on Windows the tests terminate servers instead (exit 1).
STOPPED_CLEANLY = 1 if sys.platform == "win32" else 0

EXAMPLES = ROOT / "examples"
LINES = b"one\ntwo\nthree\n"


def example(name: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / name)]


def client(*args: str, data: bytes = LINES) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*example("echoclient.py"), *args],
        input=data,
        capture_output=True,
        timeout=TIMEOUT,
        env=env(),
    )


def urls(tmp_path: Path) -> list[str]:
    found = ["tcp4://127.0.0.1:0", "udp4://127.0.0.1:0"]
    if sys.platform == "win32":
        found += [f"pipe:///packeteer-example-test-{os.getpid()}"]
    else:
        found += [
            f"local://{tmp_path}/stream.sock",
            f"local://{tmp_path}/dgram.sock?behaviour=datagram",
        ]
    return found


@pytest.mark.parametrize("index", range(4))
def test_echoserver_and_echoclient(tmp_path: Path, index: int) -> None:
    candidates = urls(tmp_path)
    if index >= len(candidates):
        pytest.skip("scheme not on this platform")
    server = Proc([*example("echoserver.py"), candidates[index]])
    try:
        bound = server.wait_for(r"^Listening on (\S+)").group(1)
        local = []
        if "behaviour=datagram" in bound:  # a path for replies, as in packeteer
            local = [f"local://{tmp_path}/client.sock?behaviour=datagram"]
        result = client(bound, *local)
        assert result.returncode == 0, result.stderr
        out = result.stdout.decode().splitlines()
        assert out[0] == f"Connect URL is: {bound}"
        assert [line for line in out if line.startswith("Received")] == [
            "Received: one",
            "Received: two",
            "Received: three",
        ]
        # One read may hold several lines ("Received: two\nthree").
        server.wait_for(r"three$")
    finally:
        server.stop()
    assert "Traceback" not in "\n".join(server.stderr)


@posix_only
def test_echoserver_stops_cleanly_on_ctrl_c() -> None:
    server = Proc([*example("echoserver.py"), "tcp4://127.0.0.1:0"])
    try:
        bound = server.wait_for(r"^Listening on (\S+)").group(1)
        assert client(bound).returncode == 0
    finally:
        assert server.stop() == 0  # Ctrl-C: a clean stop
    assert "Traceback" not in "\n".join(server.stderr)


@posix_only
def test_echoclient_over_a_fifo_is_one_way(tmp_path: Path) -> None:
    server = Proc([*example("echoserver.py"), f"fifo://{tmp_path}/f"])
    try:
        bound = server.wait_for(r"^Listening on (\S+)").group(1)
        result = client(bound, data=b"into the fifo\nexit\nnot sent\n")
        assert result.returncode == 0, result.stderr
        server.wait_for(r"^Received: into the fifo$")
        assert not any("not sent" in line for line in server.stdout)
    finally:
        server.stop()


def test_examples_reject_a_bad_url() -> None:
    result = client("tcp://nowhere:99999")
    assert result.returncode == 1
    assert b"99999" in result.stderr and b"Traceback" not in result.stderr


def test_scheduler_style_beside_plain_trio() -> None:
    result = subprocess.run(
        example("scheduler_style.py"), capture_output=True, timeout=TIMEOUT, env=env()
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert out.count("'hello, scheduler style'") == 2
    assert out.count("'hello, plain trio style'") == 2


def test_scheduler_style_serves_a_url() -> None:
    server = Proc([*example("scheduler_style.py"), "tcp4://127.0.0.1:0"])
    try:
        bound = server.wait_for(r"^Listening on (\S+) \(scheduler style\)").group(1)
        result = client(bound)
        assert result.stdout.decode().count("Received:") == 3
    finally:
        code = server.stop()
    assert code == STOPPED_CLEANLY

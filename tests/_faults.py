"""The machinery of tests/test_faults.py: subjects, strace, plain-socket peers.

A *subject* is a subprocess that runs the package: the CLI (``packeteer echo``,
``relay``) or a workload from ``tests/_fault_workload.py``. Once it has
started (and is idle: listening, or waiting for a command), :func:`inject`
attaches ``strace -f -p PID`` with one ``-e inject=`` rule and waits until
every thread is traced; leaving the block detaches again. Tampering starts at
the attach, so ``when=1`` is the first call of that syscall the package makes
for the test, and the interpreter's start-up (imports: ``openat``, ``read``)
is never touched. Invocations are counted per thread (strace's rule).

The test's side of every conversation (clients of a server, servers of a
client) uses plain blocking sockets in this process, which is not traced.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if sys.platform == "win32":  # pragma: no cover
    raise ImportError("syscall fault injection uses strace: Linux only")

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = Path(__file__).resolve().parent / "_fault_workload.py"
STRACE = shutil.which("strace")
TIMEOUT = 15.0  # seconds for anything that should take milliseconds


def strace_problem() -> str | None:
    """Why these tests cannot run here (None if they can)."""
    if not sys.platform.startswith("linux"):
        return "syscall fault injection uses strace, which is Linux-only"
    if STRACE is None:
        return "strace is not installed (apt-get install strace)"
    return None


def attach_problem() -> str | None:
    """Why strace cannot attach to our children here (a container without
    ptrace, say), or None."""
    assert STRACE is not None
    sleeper = subprocess.Popen(["sleep", "10"])
    argv = [STRACE, "-qq", "-o", "/dev/null", "-e", "trace=getpid"]
    tracer = subprocess.Popen([*argv, "-p", str(sleeper.pid)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        while _traced_by(sleeper.pid) != {tracer.pid}:
            if tracer.poll() is not None or time.monotonic() > deadline:
                return f"strace cannot attach: {tracer.communicate()[1].decode()}"
            time.sleep(0.002)
        return None
    finally:
        for proc in (tracer, sleeper):
            proc.kill()
            proc.wait()


class Subject:
    """A subprocess under test; its stdout and stderr are collected by threads.

    Reports are the JSON lines of the workloads; the CLI's lines go to
    ``stderr_lines``. ``fds()`` counts its descriptors from outside (no
    syscall of its own), so counting never disturbs a fault.
    """

    def __init__(self, argv: list[str], *, stdin: bool = False) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        self.pid = self.proc.pid
        self.idle_fds = -1  # its count when idle: set once it is ready
        self.warmed = False  # every command run once, untraced
        self.dirty = False  # a test failed while using it
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        for stream, sink in (
            (self.proc.stdout, self._out),
            (self.proc.stderr, self._err),
        ):
            threading.Thread(target=sink, args=(stream,), daemon=True).start()

    def _out(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            self.stdout_lines.append(line)
            if line.startswith("{"):
                self.reports.put(json.loads(line))

    def _err(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            self.stderr_lines.append(line)

    def report(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        try:
            return self.reports.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no report from {self.argv} within {timeout} s; stderr: "
                + "\n".join(self.stderr_lines[-20:])
            ) from None

    def logged(self, pattern: str, since: int = 0, timeout: float = TIMEOUT) -> str:
        """Wait for a stderr line (from index *since* on) matching *pattern*;
        return that line."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stderr_lines[since:]:
                if re.search(pattern, line):
                    return line
            if time.monotonic() > deadline or not self.alive():
                raise AssertionError(
                    f"{self.argv}: no stderr line like {pattern!r}; stderr:\n"
                    + "\n".join(self.stderr_lines[since:][-20:])
                )
            time.sleep(0.005)

    def command(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def steady_fds(self) -> int:
        """The fd count once it has not changed for 100 ms."""
        count, since = self.fds(), time.monotonic()
        deadline = since + TIMEOUT
        while time.monotonic() - since < 0.1 and time.monotonic() < deadline:
            time.sleep(0.01)
            now = self.fds()
            if now != count:
                count, since = now, time.monotonic()
        return count

    def settle_fds(self, expected: int, timeout: float = 5.0) -> int:
        """The fd count once it is back at *expected* (or after *timeout*)."""
        deadline = time.monotonic() + timeout
        while True:
            count = self.fds()
            if count == expected or time.monotonic() > deadline:
                return count
            time.sleep(0.01)

    def stop(self) -> int:
        """SIGTERM (the CLI's clean stop), then the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.argv} did not stop on SIGTERM") from None
        finally:
            if self.proc.stdin is not None:
                self.proc.stdin.close()

    def tracebacks(self) -> list[str]:
        return [line for line in self.stderr_lines if "Traceback" in line]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "packeteer_trio", *args]


def workload(*args: str) -> list[str]:
    return [sys.executable, str(WORKLOAD), *args]


class Tampering:
    """What one :func:`inject` block did: the tracer's log, once detached."""

    def __init__(self) -> None:
        self.log = ""

    @property
    def injected(self) -> int:
        return self.log.count("(INJECTED)")


def _traced_by(pid: int) -> set[int]:
    tracers = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{task}/status").read_text()
        except OSError:
            continue  # a thread that just ended
        match = re.search(r"TracerPid:\s*(\d+)", status)
        assert match is not None
        tracers.add(int(match[1]))
    return tracers


Rule = tuple[str, str, str]  # (syscalls, errno name, when)


@contextlib.contextmanager
def inject(
    subject: Subject, *rules: Rule, paths: tuple[str, ...] = ()
) -> Iterator[Tampering]:
    """Fail the syscalls of each rule (strace's syntax: ``sendto,sendmsg``)
    with its errno at the invocations its ``when`` selects, counted from now
    in every thread of *subject*. *paths* narrows it to calls on those files
    (``-P``)."""
    assert STRACE is not None
    tampering = Tampering()
    traced = ",".join(syscalls for syscalls, _, _ in rules)
    with tempfile.NamedTemporaryFile("r", prefix="strace-", suffix=".log") as log:
        argv = [STRACE, "-f", "-qq", "-o", log.name, "-e", f"trace={traced}"]
        for syscalls, error, when in rules:
            argv += ["-e", f"inject={syscalls}:error={error}:when={when}"]
        argv += ["-e", "signal=none"]
        for path in paths:
            argv += ["-P", path]
        argv += ["-p", str(subject.pid)]
        tracer = subprocess.Popen(argv, stderr=subprocess.PIPE)
        deadline = time.monotonic() + TIMEOUT
        while _traced_by(subject.pid) != {tracer.pid}:
            if tracer.poll() is not None or time.monotonic() > deadline:
                tracer.kill()
                problem = tracer.communicate()[1].decode().strip()
                raise AssertionError(f"strace did not attach: {problem}")
            time.sleep(0.002)
        try:
            yield tampering
        finally:
            tracer.send_signal(signal.SIGINT)  # detaches from every thread
            try:
                tracer.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                tracer.kill()
                tracer.wait()
            tampering.log = log.read()


def traced_run(
    argv: list[str], *rules: Rule, timeout: float = 60.0
) -> tuple[subprocess.CompletedProcess[str], Tampering]:
    """Run *argv* under strace from its start (for syscalls the interpreter's
    start-up never makes, such as sendto or connect)."""
    assert STRACE is not None
    tampering = Tampering()
    traced = ",".join(syscalls for syscalls, _, _ in rules)
    with tempfile.NamedTemporaryFile("r", prefix="strace-", suffix=".log") as log:
        command = [STRACE, "-f", "-qq", "-o", log.name, "-e", f"trace={traced}"]
        for syscalls, error, when in rules:
            command += ["-e", f"inject={syscalls}:error={error}:when={when}"]
        result = subprocess.run(
            [*command, *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )
        tampering.log = log.read()
    return result, tampering


# -- the test's own side: plain blocking sockets --------------------------------


def address_of(url: str) -> tuple[int, Any]:
    """(family, sockaddr) of a tcp4/tcp6/udp4/udp6/local URL the CLI printed."""
    match = re.match(r"(tcp|udp)([46])://\[?([^\]]*?)\]?:(\d+)$", url)
    if match:
        family = socket.AF_INET if match[2] == "4" else socket.AF_INET6
        return family, (match[3], int(match[4]))
    assert url.startswith("local:///"), url
    path = url.removeprefix("local://").split("?")[0]
    if path.startswith("/%00"):
        return socket.AF_UNIX, "\0" + path[4:]
    return socket.AF_UNIX, path


def stream_round_trip(url: str, payload: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send *payload*, half-close, and return everything echoed until EOF."""
    family, sockaddr = address_of(url)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
        received: list[bytes] = []

        def receive() -> None:
            try:
                while data := sock.recv(65536):
                    received.append(data)
            except OSError:
                pass  # a reset: what came so far is the answer

        reader = threading.Thread(target=receive)
        reader.start()
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        reader.join(timeout + 1)
        return b"".join(received)


class DatagramPeer:
    """A plain datagram socket that talks to a datagram server."""

    def __init__(self, url: str, tmp: Path) -> None:
        family, self.server = address_of(url)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if family == socket.AF_UNIX:
            self.sock.bind(str(tmp / f"peer-{os.getpid()}-{time.monotonic_ns()}.sock"))
        else:
            self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))

    def ask(self, data: bytes, timeout: float = 2.0) -> bytes | None:
        """Send one datagram; its echo, or None if none came in *timeout* s."""
        self.sock.settimeout(timeout)
        self.sock.sendto(data, self.server)
        try:
            while True:
                reply = self.sock.recv(70000)
                if reply == data:
                    return reply
        except TimeoutError:
            return None

    def close(self) -> None:
        self.sock.close()


def needs(reason: str | None) -> pytest.MarkDecorator:
    return pytest.mark.skipif(reason is not None, reason=reason or "")

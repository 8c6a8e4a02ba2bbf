"""The command line, end to end: real subprocesses on loopback and temp paths.

Servers are started on port 0 (or a path in tmp_path) and print the address
they bound ("listening on URL" on stderr); the tests read it from there.
Every subprocess is stopped in a ``finally``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

from packeteer_trio.cli import build_parser, main
from packeteer_trio.cli._args import Number, url_arg

from .conftest import has_ipv6_loopback, linux_only, posix_only

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "packeteer_trio"]
TIMEOUT = 30


# How the tests stop a server: Ctrl-C on POSIX. On Windows Ctrl-C is a console
# event (and Wine has no console to send it through): terminate instead.
STOP = signal.SIGTERM if sys.platform == "win32" else signal.SIGINT


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",  # Windows pipes default to the ANSI code page
    }


def cli(
    *args: str, data: bytes = b"", timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, *args], input=data, capture_output=True, timeout=timeout, env=env()
    )


class Proc:
    """A background process whose output lines are collected as they come."""

    def __init__(self, argv: list[str], *, stdin: int | None = subprocess.DEVNULL):
        self.popen = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env(),
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        for pipe, into in (
            (self.popen.stdout, self.stdout),
            (self.popen.stderr, self.stderr),
        ):
            threading.Thread(target=self._read, args=(pipe, into), daemon=True).start()

    def _read(self, pipe: object, into: list[str]) -> None:
        for raw in pipe:  # type: ignore[attr-defined]
            line = raw.decode(errors="replace").rstrip("\r\n")
            into.append(line)
            self._lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        """The first new output line matching *pattern* (a regex)."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r}; stderr: {self.stderr}"
                ) from None
            match = re.search(pattern, line)
            if match:
                return match

    def bound_url(self) -> str:
        return self.wait_for(r"listening on ([^\s,]+)").group(1)

    def stop(self, sig: int = STOP) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


@contextmanager
def running(*args: str) -> Iterator[Proc]:
    proc = Proc([*CLI, *args])
    try:
        yield proc
    finally:
        proc.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    text = result.stderr.decode()
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text
    return text


# -- demo -------------------------------------------------------------------------


def test_demo_runs_every_scheme() -> None:
    result = cli("demo", timeout=60)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    rows = {
        (line.split()[0], line.split()[1]): line
        for line in out.splitlines()[1:]
        if line and not line[0].isdigit()
    }
    expected = ["tcp4", "udp4", "anon", "inproc"]
    if sys.platform == "win32":
        expected += ["pipe"]
    else:
        expected += ["local:path", "local:unnamed", "fifo"]
    if sys.platform.startswith("linux"):
        expected += ["local:abstract"]
    for scheme in expected:
        assert any(key[0] == scheme for key in rows), (scheme, out)
    for behaviour in ("stream", "datagram"):
        assert any(key[1] == behaviour for key in rows)
    for key in (("tcp6", "stream"), ("udp6", "datagram")):
        want = "OK" if has_ipv6_loopback() else "SKIPPED"
        assert rows[key].split()[-1].startswith(want) or want in rows[key]
    assert "FAILED" not in out
    assert "demo [1/" in result.stderr.decode()  # progress while it runs


def test_demo_only_filters_rows() -> None:
    result = cli("demo", "--only", "anon", "--bulk", "1", "--round-trips", "100")
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "anon" in out and "tcp4" not in out
    result = cli("demo", "--only", "nothing-like-this")
    assert result.returncode == 2
    assert "nothing-like-this" in one_line_error(result)


# -- echo + cat -------------------------------------------------------------------


def stream_urls(tmp_path: Path) -> list[str]:
    urls = ["tcp4://127.0.0.1:0"]
    if has_ipv6_loopback():
        urls.append("tcp6://[::1]:0")
    if sys.platform == "win32":
        urls.append(f"pipe:///packeteer-cli-test-{os.getpid()}")
    else:
        urls.append(f"local://{tmp_path}/echo.sock")
    return urls


def test_echo_cat_round_trip_streams(tmp_path: Path) -> None:
    data = b"hello\nworld\n" + bytes(range(256)) * 100
    for url in stream_urls(tmp_path):
        with running("echo", url) as server:
            bound = server.bound_url()
            result = cli("cat", bound, data=data)
            assert result.returncode == 0, result.stderr
            assert result.stdout == data
            server.wait_for(r"#1 connected")
            server.wait_for(r"#1 disconnected: 25612 bytes")
        assert "Traceback" not in "\n".join(server.stderr)


@posix_only
def test_ctrl_c_stops_echo_cleanly(tmp_path: Path) -> None:
    with running("echo", f"local://{tmp_path}/echo.sock") as server:
        assert cli("cat", server.bound_url(), data=b"x").stdout == b"x"
    assert server.popen.returncode == 0  # Ctrl-C stops it cleanly
    assert "Traceback" not in "\n".join(server.stderr)
    assert not (tmp_path / "echo.sock").exists()  # removed on the way out


@pytest.mark.parametrize("family", ["udp4", "local"])
def test_echo_cat_round_trip_datagrams(tmp_path: Path, family: str) -> None:
    if family == "local" and sys.platform == "win32":
        pytest.skip("no local:// on Windows")
    url = {
        "udp4": "udp4://127.0.0.1:0",
        "local": f"local://{tmp_path}/d.sock?behaviour=datagram",
    }[family]
    with running("echo", url) as server:
        result = cli("cat", server.bound_url(), data=b"one\ntwo\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"one\ntwo\n"
        server.wait_for("datagrams from")


@posix_only
def test_echo_cat_round_trip_fifo(tmp_path: Path) -> None:
    """FIFOs are one-way: the echo goes back through a second FIFO."""
    inbound, outbound = f"fifo://{tmp_path}/in", f"fifo://{tmp_path}/out"
    with running("echo", inbound, "--reply", outbound) as server:
        server.bound_url()
        for text in (b"first\n", b"second session\n"):
            result = cli("cat", inbound, "--reply", outbound, data=text)
            assert result.returncode == 0, result.stderr
            assert result.stdout == text


@posix_only
def test_netcat_over_fifo(tmp_path: Path) -> None:
    url = f"fifo://{tmp_path}/nc"
    listener = Proc([*CLI, "cat", "--listen", url])
    try:
        listener.bound_url()
        result = cli("cat", url, data=b"through a fifo\n")
        assert result.returncode == 0, result.stderr
        assert listener.popen.wait(timeout=TIMEOUT) == 0
        listener.wait_for("through a fifo")
    finally:
        listener.stop()


def test_cat_self_pipe_reads_back() -> None:
    result = cli("cat", "anon://", data=b"x" * 200_000)
    assert result.returncode == 0 and result.stdout == b"x" * 200_000


def test_echo_quiet_logs_only_the_address() -> None:
    with running("echo", "-q", "tcp4://127.0.0.1:0") as server:
        assert cli("cat", server.bound_url(), data=b"hi").stdout == b"hi"
    assert len(server.stderr) == 1, server.stderr


# -- relay ------------------------------------------------------------------------


@posix_only
def test_relay_tcp_to_local_moves_10_mb_for_two_clients(tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(10_000_000))
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    with running("echo", "-q", f"local://{tmp_path}/backend.sock") as backend:
        backend_url = backend.bound_url()
        with running("relay", "--stats", "tcp4://127.0.0.1:0", backend_url) as relay:
            front = relay.bound_url()
            clients = []
            try:
                for i in range(2):
                    with (tmp_path / "payload").open("rb") as stdin:
                        out = (tmp_path / f"out{i}").open("wb")
                        clients.append(
                            subprocess.Popen(
                                [*CLI, "cat", front], stdin=stdin, stdout=out, env=env()
                            )
                        )
                        out.close()
                for client in clients:
                    assert client.wait(timeout=TIMEOUT) == 0
            finally:
                for client in clients:
                    if client.poll() is None:
                        client.kill()
            for i in range(2):
                got = hashlib.sha256((tmp_path / f"out{i}").read_bytes()).hexdigest()
                assert got == digest
            for _ in range(2):
                stats = relay.wait_for(r"10000000 bytes up .* 10000000 bytes down")
                assert "MB/s" in stats.string


def test_relay_streams_both_ways() -> None:
    backend = "tcp4://127.0.0.1:0"
    if sys.platform == "win32":  # the Windows stream transport to bridge
        backend = f"pipe:///packeteer-relay-test-{os.getpid()}"
    data = bytes(range(256)) * 400
    with running("echo", "-q", backend) as server:
        with running("relay", "tcp4://127.0.0.1:0", server.bound_url()) as relay:
            result = cli("cat", relay.bound_url(), data=data)
            assert result.returncode == 0, result.stderr
            assert result.stdout == data


def test_relay_refuses_stream_to_datagram() -> None:
    result = cli("relay", "tcp4://127.0.0.1:0", "udp4://127.0.0.1:9")
    assert result.returncode == 2
    assert "stream" in one_line_error(result)


def test_relay_datagrams() -> None:
    with running("echo", "-q", "udp4://127.0.0.1:0") as backend:
        backend_url = backend.bound_url()
        with running("relay", "udp4://127.0.0.1:0", backend_url) as relay:
            result = cli("cat", relay.bound_url(), data=b"a\nb\n")
            assert result.stdout == b"a\nb\n"


# -- TLS: no half-close ------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    return tls_ca.issue_cert("127.0.0.1")


@pytest.fixture
def tls_files(
    tmp_path: Path, tls_ca: trustme.CA, tls_cert: trustme.LeafCert
) -> dict[str, Path]:
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem"}
    tls_ca.cert_pem.write_to_path(str(files["ca"]))
    tls_cert.private_key_and_cert_chain_pem.write_to_path(str(files["cert"]))
    return files


@contextmanager
def stdlib_tls_echo(cert: trustme.LeafCert) -> Iterator[tuple[int, list[str]]]:
    """A TLS echo server on the ssl module alone (no packeteer in it), for
    one connection: echoes until the client closes. Yields its port and a
    list that gets "close_notify" for a clean TLS close, else the error."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    endings: list[str] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            # suppress_ragged_eofs=False: a close without close_notify raises.
            with context.wrap_socket(
                conn, server_side=True, suppress_ragged_eofs=False
            ) as tls:
                while data := tls.recv(65536):
                    tls.sendall(data)
            endings.append("close_notify")
        except OSError as exc:
            endings.append(repr(exc))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], endings
    finally:
        thread.join(TIMEOUT)
        listener.close()


def test_cat_over_tls_to_a_stdlib_echo_server(
    tls_cert: trustme.LeafCert, tls_files: dict[str, Path]
) -> None:
    """TLS cannot half-close: at the end of stdin cat reads the echo, then
    closes cleanly (it used to fail in send_eof and print nothing)."""
    data = b"over tls\n" + os.urandom(300_000)
    with stdlib_tls_echo(tls_cert) as (port, endings):
        url = f"tls+tcp://127.0.0.1:{port}?cafile={tls_files['ca']}"
        result = cli("cat", url, "--linger", "2", data=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    assert result.stderr == b""
    assert endings == ["close_notify"]


def test_echo_relay_cat_over_tls(tls_files: dict[str, Path]) -> None:
    """packeteer echo on tls+tcp, cat straight to it, and relay from tcp to it."""
    server_url = f"tls+tcp://127.0.0.1:0?certfile={tls_files['cert']}"
    data = os.urandom(1_000_000)
    with running("echo", server_url) as server:
        bound = re.search(r":(\d+)\?", server.bound_url())
        assert bound is not None
        port = bound.group(1)
        target = f"tls+tcp://127.0.0.1:{port}?cafile={tls_files['ca']}"
        result = cli("cat", target, data=b"hello\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"hello\n"
        server.wait_for(r"#1 disconnected: 6 bytes")
        with running("relay", "tcp4://127.0.0.1:0", target) as relay:
            result = cli("cat", relay.bound_url(), data=data)
            assert result.returncode == 0, result.stderr
            assert result.stdout == data
            server.wait_for(r"#2 disconnected: 1000000 bytes")
            relay.wait_for(r"#1 disconnected")
        assert not [line for line in relay.stderr if "error" in line], relay.stderr
    assert not [line for line in server.stderr if "error" in line], server.stderr


# -- bench ------------------------------------------------------------------------


def test_bench_prints_numbers() -> None:
    with running("echo", "-q", "tcp4://127.0.0.1:0") as server:
        args = ["--count", "300", "--bulk", "1", "--connections", "2"]
        result = cli("bench", server.bound_url(), *args)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert re.search(r"throughput: .* [\d.]+ MB/s", out), out
    assert re.search(r"p50 [\d.]+ .*s, p99 [\d.]+ ", out), out
    assert "600 x 64 B" in out


def test_bench_datagrams_and_self_pipe() -> None:
    with running("echo", "-q", "udp4://127.0.0.1:0") as server:
        result = cli("bench", server.bound_url(), "--count", "200")
    assert result.returncode == 0, result.stderr
    assert b"datagrams/s" in result.stdout and b"p99" in result.stdout
    result = cli("bench", "anon://", "--count", "200", "--bulk", "1")
    assert result.returncode == 0 and b"MB/s" in result.stdout


# -- errors and usage -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["cat", "foo://x"],
        ["echo", "tcp://127.0.0.1:99999"],
        ["relay", "tcp4://[::1]:0", "local:///x"],
        ["bench", "nonsense"],
        ["echo", "anon://"],
        ["cat", "fifo://"],
        ["echo"],
        ["frobnicate"],
        ["bench", "tcp4://127.0.0.1:1", "--count", "0"],
    ],
)
def test_bad_usage_exits_2_in_one_line(args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert "error" in one_line_error(result)


def test_refused_exits_1_in_one_line() -> None:
    port = closed_port()
    result = cli("cat", f"tcp4://127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"tcp4://127.0.0.1:{port}" in one_line_error(result)


@posix_only
def test_refused_local_exits_1_in_one_line(tmp_path: Path) -> None:
    result = cli("bench", f"local://{tmp_path}/nobody.sock")
    assert result.returncode == 1
    assert "nobody.sock" in one_line_error(result)


@pytest.mark.wine_differs(
    reason="Wine 8 keeps the ICMP port-unreachable error in SO_ERROR: recv() "
    "says WSAEWOULDBLOCK and the socket never polls readable (Windows: "
    "WSAECONNRESET from recv())"
)
def test_datagram_refused_exits_1() -> None:
    result = cli("cat", f"udp4://127.0.0.1:{closed_port()}", data=b"anyone?\n")
    assert result.returncode == 1
    assert "refused" in one_line_error(result)


def test_help_on_every_subcommand() -> None:
    for command in ("demo", "echo", "cat", "relay", "bench"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
    result = cli("--help")
    assert result.returncode == 0 and b"relay" in result.stdout


def test_main_in_process_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as info:
        main(["cat", "local:///x?behaviour=sideways"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "sideways" in err and len(err.strip().splitlines()) == 2


@linux_only
def test_echo_on_abstract_name() -> None:
    with running("echo", "local:///%00packeteer-cli-test") as server:
        url = server.bound_url()
        assert cli("cat", url, data=b"abstract").stdout == b"abstract"


# -- numeric options: every one validated by argparse -------------------------------

# Options that take free text; any other value-taking option must be a URL or
# a Number (a new type=float/int option fails test_every_option_is_validated).
TEXT_OPTIONS = {("demo", "only"), ("cat", "exec")}


def value_actions() -> list[tuple[str, argparse.Action]]:
    """(subcommand, action) for every argument that takes a value."""
    found = []
    for command, parser in build_parser().commands.items():
        for action in parser._actions:
            if action.option_strings and action.nargs == 0:
                continue  # flags: --help, --quiet, --listen
            found.append((command, action))
    return found


def positionals(command: str) -> list[str]:
    parser = build_parser().commands[command]
    return ["tcp4://127.0.0.1:1" for a in parser._actions if not a.option_strings]


def bad_values(number: Number) -> list[str]:
    values = ["nan", "NaN", "inf", "-inf", "1e999", "abc", "", "9" * 5000]
    if number.least is not None:
        values += [str(number.least - 1), str(number.least - 0.5)]
    if number.above is not None:
        values += [str(number.above), str(number.above - 1)]
    if number.most is not None:
        values += [str(number.most + 1)]
    if number.kind is int:
        values += ["1.5", "1e3"]
    return values


NUMERIC = [
    (command, action.option_strings[-1], value)
    for command, action in value_actions()
    if isinstance(action.type, Number)
    for value in bad_values(action.type)
]


def test_every_option_is_validated() -> None:
    assert len({(c, o) for c, o, _ in NUMERIC}) >= 10  # the parsers were found
    for command, action in value_actions():
        if (command, action.dest) in TEXT_OPTIONS:
            continue
        assert action.type is url_arg or isinstance(action.type, Number), (
            f"packeteer {command} {action.option_strings or action.dest}: "
            f"type={action.type!r} does not validate its value"
        )


@pytest.mark.parametrize(("command", "option", "value"), NUMERIC)
def test_bad_numbers_exit_2_naming_the_option(
    command: str, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, *positionals(command), f"{option}={value}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    # argparse names every spelling: "argument -w/--wait: ..."
    prefix = rf"packeteer {command}: error: argument (-\w/)?{option}: "
    assert re.match(prefix, lines[0])


def test_good_numbers_are_taken() -> None:
    for command, action in value_actions():
        number = action.type
        if not isinstance(number, Number):
            continue
        low = number.least if number.least is not None else (number.above or 0) + 1
        option = action.option_strings[-1]
        args = build_parser().parse_args(
            [command, *positionals(command), f"{option}={low:g}"]
        )
        assert getattr(args, action.dest) == low, (command, option)


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "tcp4://127.0.0.1:1", "--timeout", "nan"],
        ["bench", "tcp4://127.0.0.1:1", "--timeout", "-1"],
        ["bench", "tcp4://127.0.0.1:1", "--bulk", "nan"],
        ["bench", "tcp4://127.0.0.1:1", "--bulk", "-1"],
        ["cat", "tcp4://127.0.0.1:1", "--linger", "nan"],
        ["cat", "tcp4://127.0.0.1:1", "--linger", "-1"],
        ["demo", "--round-trips", "0"],
        ["demo", "--bulk", "-1"],
        ["demo", "--timeout", "nan"],
        ["relay", "tcp4://127.0.0.1:0", "tcp4://127.0.0.1:1", "--idle", "nan"],
        ["relay", "tcp4://127.0.0.1:0", "tcp4://127.0.0.1:1", "--idle", "-1"],
    ],
)
def test_bad_numbers_from_the_issue(args: list[str]) -> None:
    """As a user types them: nothing runs, one line names the option, exit 2."""
    result = cli(*args, timeout=10)
    assert result.returncode == 2, result
    assert f"argument {args[-2]}: must be" in one_line_error(result)
    assert result.stdout == b""


@pytest.mark.parametrize("command", ["demo", "echo", "cat", "relay", "bench"])
def test_unknown_flag_names_the_subcommand(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, *positionals(command), "--no-such-flag"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"packeteer {command}: error: unrecognized arguments: ")
    assert "--no-such-flag" in err and len(err.strip().splitlines()) == 1

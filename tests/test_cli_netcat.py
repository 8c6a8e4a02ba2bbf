"""The netcat and socat habits of the command line (issue 18), against the
real tools: netcat-openbsd (``nc``) and ``socat`` on the other end.

Every flag on tcp and local://, and on udp:// and fifo:// where it applies.
Servers print ``listening on URL``; the tests read the address from there.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

if sys.platform == "win32":  # pragma: no cover
    pytest.skip(
        "nc and socat, local:// and fifo://: POSIX only", allow_module_level=True
    )

import fcntl  # POSIX modules: imported after the skip
import termios

from .test_cli import CLI, TIMEOUT, Proc, cli, closed_port, env, one_line_error

linux_proc = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc (Linux)"
)


def tool(
    *argv: str, data: bytes = b"", timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """Run nc or socat to completion."""
    return subprocess.run(argv, input=data, capture_output=True, timeout=timeout)


@contextmanager
def background(*argv: str, stdin: int | None = subprocess.DEVNULL) -> Iterator[Proc]:
    """A process (ours or a tool) running while the block runs, then stopped."""
    proc = Proc(list(argv), stdin=stdin)
    try:
        yield proc
    finally:
        proc.stop()


def packeteer(*args: str, stdin: int | None = subprocess.DEVNULL) -> Proc:
    return Proc([*CLI, *args], stdin=stdin)


@contextmanager
def server(*args: str, stdin: int | None = subprocess.DEVNULL) -> Iterator[Proc]:
    with background(*CLI, *args, stdin=stdin) as proc:
        yield proc


def nc_argv(url: str) -> list[str]:
    """nc's arguments to reach one of our tcp4:// or local:// listeners."""
    if url.startswith("local://"):
        return ["-U", url.removeprefix("local://")]
    match = re.fullmatch(r"tcp4://([\d.]+):(\d+)", url)
    assert match is not None, url
    return [match.group(1), match.group(2)]


def socat_address(url: str) -> str:
    if url.startswith("local://"):
        return f"UNIX-CONNECT:{url.removeprefix('local://')}"
    return "TCP4:" + url.removeprefix("tcp4://")


def listen_url(kind: str, tmp_path: Path) -> str:
    return {"tcp": "tcp4://127.0.0.1:0", "local": f"local://{tmp_path}/s.sock"}[kind]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Poll *condition* until true; bounded."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


STREAMS = ["tcp", "local"]


@contextmanager
def nc_server(kind: str, tmp_path: Path, says: bytes) -> Iterator[tuple[Proc, str]]:
    """``nc -l -N``: sends *says*, then shuts down; prints what it receives."""
    if kind == "tcp":
        port = str(closed_port())
        listen, url = ["-l", "127.0.0.1", port], f"tcp4://127.0.0.1:{port}"
    else:
        path = tmp_path / "nc.sock"
        listen, url = ["-l", "-U", str(path)], f"local://{path}"
    with background("nc", "-N", *listen, stdin=subprocess.PIPE) as nc:
        assert nc.popen.stdin is not None
        nc.popen.stdin.write(says)
        nc.popen.stdin.close()
        yield nc, url


def cat_retrying(*args: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """cat, again while the nc it talks to is not listening yet (bounded)."""
    for _ in range(200):
        result = cli("cat", *args, data=data)
        if b"refused" not in result.stderr and b"No such file" not in result.stderr:
            return result
        time.sleep(0.05)
    raise AssertionError("nc never listened")


# -- cat -l -k: one client after the other ------------------------------------------


@pytest.mark.parametrize("kind", STREAMS)
def test_keep_open_serves_nc_clients_in_turn(kind: str, tmp_path: Path) -> None:
    with server("cat", "-lk", "-v", listen_url(kind, tmp_path)) as cat:
        url = cat.bound_url()
        for number, word in enumerate(["first", "second", "third"], 1):
            result = tool("nc", "-N", *nc_argv(url), data=f"{word}\n".encode())
            assert result.returncode == 0, result.stderr
            cat.wait_for(rf"#{number} disconnected: .*: 0 bytes sent, ")
        wait_until(lambda: len(cat.stdout) == 3, "three lines")
        assert cat.popen.poll() is None  # still listening
    assert cat.stdout == ["first", "second", "third"]
    assert "Traceback" not in "\n".join(cat.stderr)


@pytest.mark.parametrize("kind", STREAMS)
def test_listen_without_keep_open_serves_one(kind: str, tmp_path: Path) -> None:
    with server("cat", "-l", listen_url(kind, tmp_path)) as cat:
        url = cat.bound_url()
        assert tool("nc", "-N", *nc_argv(url), data=b"only\n").returncode == 0
        assert cat.popen.wait(TIMEOUT) == 0
    assert cat.stdout == ["only"]
    assert tool("nc", "-N", *nc_argv(url), data=b"late\n").returncode != 0


def test_keep_open_fifo_takes_writer_after_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    with server("cat", "-lk", f"fifo://{fifo}") as cat:
        cat.bound_url()
        for word in ("one", "two"):
            result = tool(
                "socat", "-u", "STDIN", f"PIPE:{fifo}", data=f"{word}\n".encode()
            )
            assert result.returncode == 0, result.stderr
            cat.wait_for(word)
    assert cat.stdout == ["one", "two"]
    assert not fifo.exists()  # removed on Ctrl-C


def test_keep_open_needs_listen_and_refuses_reply() -> None:
    for args in (["-k"], ["-lk", "--reply", "fifo:///tmp/x"]):
        result = cli("cat", *args, "tcp4://127.0.0.1:1")
        assert result.returncode == 2
        assert "--keep-open" in one_line_error(result)


def test_keep_open_keeps_a_line_typed_between_clients(tmp_path: Path) -> None:
    """stdin a terminal (read in a worker thread): a line typed while no
    client is connected goes to the next one, it is not lost with the read
    that the first session abandoned."""
    master, slave = os.openpty()
    try:
        cat = packeteer("cat", "-lk", "-v", listen_url("tcp", tmp_path), stdin=slave)
        try:
            url = cat.bound_url()
            first = tool("nc", "-N", *nc_argv(url), data=b"bye\n")
            assert first.returncode == 0 and first.stdout == b""
            cat.wait_for(r"#1 disconnected")
            os.write(master, b"kept\n")
            second = Proc(["nc", *nc_argv(url)], stdin=subprocess.PIPE)
            try:
                second.wait_for("^kept$")
            finally:
                second.stop()
        finally:
            cat.stop()
    finally:
        os.close(master)
        os.close(slave)


# -- cat -e: a child per connection -------------------------------------------------


@pytest.mark.parametrize("kind", STREAMS)
def test_exec_serves_two_nc_clients_in_turn(kind: str, tmp_path: Path) -> None:
    """The issue's 'done means', on tcp and local."""
    with server(
        "cat", "-lk", "-v", "-e", "tr a-z A-Z", listen_url(kind, tmp_path)
    ) as cat:
        url = cat.bound_url()
        for number, word in enumerate(["hello", "again"], 1):
            result = tool("nc", "-N", *nc_argv(url), data=f"{word}\n".encode())
            assert result.stdout == f"{word.upper()}\n".encode(), result.stderr
            cat.wait_for(rf"#{number} tr a-z A-Z: exited with status 0")
            cat.wait_for(rf"#{number} disconnected: .*: 6 bytes sent, 6 bytes received")


@pytest.mark.parametrize("kind", STREAMS)
def test_exec_with_keep_open_serves_concurrently(kind: str, tmp_path: Path) -> None:
    with server("cat", "-lk", "-e", "tr a-z A-Z", listen_url(kind, tmp_path)) as cat:
        address = socat_address(cat.bound_url())
        # The first client stays connected while the second is served.
        with background("socat", "-", address, stdin=subprocess.PIPE) as first:
            assert first.popen.stdin is not None
            first.popen.stdin.write(b"first\n")
            first.popen.stdin.flush()
            second = tool("socat", "-", address, data=b"second\n")
            assert second.stdout == b"SECOND\n"
            assert first.popen.poll() is None
            first.popen.stdin.close()  # socat passes the end of file on
            first.wait_for("^FIRST$")


@pytest.mark.parametrize("kind", STREAMS)
def test_exec_when_connecting(kind: str, tmp_path: Path) -> None:
    with nc_server(kind, tmp_path, b"shout\n") as (nc, url):
        command = "sh -c 'tr a-z A-Z; exit 3'"
        result = cat_retrying("-v", "-e", command, url, data=b"")
        assert result.returncode == 0, result.stderr
        nc.wait_for("^SHOUT$")
    assert b": exited with status 3" in result.stderr


def children(pid: int) -> list[int]:
    # Every thread's: trio starts children from a worker thread.
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@linux_proc
@pytest.mark.parametrize("kind", STREAMS)
def test_exec_child_killed_and_reaped_when_the_stream_breaks(
    kind: str, tmp_path: Path
) -> None:
    with server("cat", "-lk", "-v", "-e", "yes", listen_url(kind, tmp_path)) as cat:
        nc = shlex.join(["nc", *nc_argv(cat.bound_url())])
        before = fd_count(cat.popen.pid)
        for number in (1, 2):
            # head leaves after 100 bytes, nc with it: the stream breaks
            # under the endless writer (EPIPE/ECONNRESET), and yes must go.
            result = tool("sh", "-c", f"{nc} | head -c 100")
            assert result.stdout == b"y\n" * 50
            started = cat.wait_for(rf"#{number} yes: started \(pid (\d+)\)")
            # Its pipes are closed and SIGTERM sent: whichever ends it first.
            cat.wait_for(rf"#{number} yes: killed by SIG(TERM|PIPE)$")
            assert not Path(f"/proc/{started.group(1)}").exists()  # not even a zombie
            assert children(cat.popen.pid) == []
        wait_until(lambda: fd_count(cat.popen.pid) == before, "the fds to be closed")


@linux_proc
def test_exec_child_killed_when_cat_is_interrupted(tmp_path: Path) -> None:
    with server(
        "cat", "-l", "-v", "-e", "sleep 1000", listen_url("local", tmp_path)
    ) as cat:
        address = socat_address(cat.bound_url())
        with background("socat", "-", address, stdin=subprocess.PIPE):
            pid = int(cat.wait_for(r"sleep 1000: started \(pid (\d+)\)").group(1))
            assert cat.stop(signal.SIGINT) == 0
    assert any("sleep 1000: killed by SIGTERM" in line for line in cat.stderr)
    assert not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("kind", STREAMS)
def test_exec_idle_timeout_ends_the_child(kind: str, tmp_path: Path) -> None:
    with server(
        "cat", "-l", "-v", "-w", "0.5", "-e", "sleep 1000", listen_url(kind, tmp_path)
    ) as cat:
        address = socat_address(cat.bound_url())
        with background("socat", "-", address, stdin=subprocess.PIPE):
            assert cat.popen.wait(TIMEOUT) == 1
    errors = [line for line in cat.stderr if "error" in line]
    assert len(errors) == 1 and "no data for 0.5 s (--wait)" in errors[0], cat.stderr
    assert any("sleep 1000: killed by SIGTERM" in line for line in cat.stderr)


def test_exec_bad_commands_exit_2(tmp_path: Path) -> None:
    for command, said in (
        ("no-such-command-anywhere", "command not found"),
        ("'unclosed", "No closing quotation"),
        ("", "empty"),
    ):
        result = cli("cat", "-e", command, "tcp4://127.0.0.1:1")
        assert result.returncode == 2
        assert said in one_line_error(result)
    result = cli("cat", "-e", "cat", "udp4://127.0.0.1:1")
    assert result.returncode == 2
    assert "stream URL" in one_line_error(result)


# -- -w/--wait: connect timeout and idle timeout -----------------------------------


@contextmanager
def full_backlog(kind: str, tmp_path: Path) -> Iterator[str]:
    """A listener that never accepts and whose queue is full: connect hangs
    (TCP: the SYN is dropped; AF_UNIX: EAGAIN, retried)."""
    family = socket.AF_UNIX if kind == "local" else socket.AF_INET
    listener = socket.socket(family)
    address: str | tuple[str, int] = (
        str(tmp_path / "full.sock") if kind == "local" else ("127.0.0.1", 0)
    )
    listener.bind(address)
    listener.listen(0)
    fillers = []
    try:
        for _ in range(8):  # more than any backlog of 0 rounds up to
            filler = socket.socket(family)
            filler.setblocking(False)
            try:
                filler.connect(listener.getsockname())
            except (BlockingIOError, InterruptedError):
                pass
            fillers.append(filler)
        if kind == "local":
            yield f"local://{address}"
        else:
            yield f"tcp4://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.parametrize("kind", STREAMS)
def test_wait_bounds_connect(kind: str, tmp_path: Path) -> None:
    with full_backlog(kind, tmp_path) as url:
        result = cli("cat", "-w", "0.5", url)
    assert result.returncode == 1
    assert f"{url}: connect timed out after 0.5 s (--wait)" in one_line_error(result)


@pytest.mark.parametrize("kind", STREAMS)
def test_wait_ends_an_idle_connection(kind: str, tmp_path: Path) -> None:
    if kind == "tcp":
        port = str(closed_port())
        listen, url = ["-l", "127.0.0.1", port], f"tcp4://127.0.0.1:{port}"
    else:
        path = tmp_path / "nc.sock"
        listen, url = ["-l", "-U", str(path)], f"local://{path}"
    with background("nc", *listen, stdin=subprocess.PIPE) as nc:
        # nc -l prints what it gets: once "hi" is there, cat is connected.
        deadline = time.monotonic() + 10
        while True:
            cat = packeteer("cat", "-w", "0.5", url, stdin=subprocess.PIPE)
            assert cat.popen.stdin is not None
            cat.popen.stdin.write(b"hi\n")
            cat.popen.stdin.flush()  # stdin stays open: only -w can end it
            code = cat.popen.wait(TIMEOUT)
            if (
                code == 1
                and "refused" in " ".join(cat.stderr)
                and time.monotonic() < deadline
            ):
                continue  # nc was not listening yet
            break
        nc.wait_for("^hi$")
    assert code == 1
    assert len(cat.stderr) == 1 and "no data for 0.5 s (--wait)" in cat.stderr[0]


def udp_bound(port: int) -> bool:
    """Whether someone (socat) has bound 127.0.0.1:*port* for UDP yet."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_wait_ends_an_idle_udp_cat() -> None:
    port = closed_port()
    sink = ["socat", "-u", f"UDP4-RECV:{port},bind=127.0.0.1", "STDOUT"]
    with background(*sink) as sink_proc:
        wait_until(lambda: udp_bound(port), "socat to bind")
        cat = packeteer(
            "cat", "-w", "0.5", f"udp4://127.0.0.1:{port}", stdin=subprocess.PIPE
        )
        assert cat.popen.stdin is not None
        cat.popen.stdin.write(b"into the void\n")
        cat.popen.stdin.flush()
        assert cat.popen.wait(TIMEOUT) == 1
        sink_proc.stop()  # datagrams go without line endings: read to the end
        wait_until(lambda: sink_proc.stdout == ["into the void"], "the datagram")
    assert len(cat.stderr) == 1 and "no data for 0.5 s (--wait)" in cat.stderr[0]


def test_wait_ends_an_idle_fifo_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    with server("cat", "-l", "-w", "0.5", f"fifo://{fifo}") as cat:
        cat.bound_url()
        # A writer that opens the FIFO and then says nothing.
        with background("socat", "-u", "STDIN", f"PIPE:{fifo}", stdin=subprocess.PIPE):
            assert cat.popen.wait(TIMEOUT) == 1
    assert "no data for 0.5 s (--wait)" in cat.stderr[-1]


@pytest.mark.parametrize("kind", STREAMS)
def test_relay_wait_closes_idle_and_unreachable(kind: str, tmp_path: Path) -> None:
    with full_backlog(kind, tmp_path) as stuck:
        with server("relay", "-w", "0.5", "tcp4://127.0.0.1:0", stuck) as relay:
            address = socat_address(relay.bound_url())
            with background("socat", "-", address, stdin=subprocess.PIPE):
                relay.wait_for(r"#1 error: .*connect timed out after 0.5 s \(--wait\)")
    target = listen_url(kind, tmp_path).replace("s.sock", "t.sock")
    with (
        server("echo", target) as echo,
        server("relay", "-w", "0.5", "tcp4://127.0.0.1:0", echo.bound_url()) as relay,
    ):
        address = socat_address(relay.bound_url())
        with background("socat", "-", address, stdin=subprocess.PIPE) as client:
            assert client.popen.stdin is not None
            client.popen.stdin.write(b"ping\n")
            client.popen.stdin.flush()
            client.wait_for("^ping$")
            relay.wait_for(r"#1 error: .*no data for 0.5 s \(--wait\)")
            relay.wait_for(r"#1 disconnected")
            assert client.popen.wait(TIMEOUT) == 0  # closed by the relay
        assert relay.popen.poll() is None  # the relay itself goes on


# -- --send-only / --receive-only ------------------------------------------------


@pytest.mark.parametrize("kind", STREAMS)
def test_send_only(kind: str, tmp_path: Path) -> None:
    with nc_server(kind, tmp_path, b"from nc\n") as (nc, url):
        result = cat_retrying("--send-only", url, data=b"to nc\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b""  # nc's line was read and dropped
        nc.wait_for("^to nc$")


@pytest.mark.parametrize("kind", STREAMS)
def test_receive_only(kind: str, tmp_path: Path) -> None:
    with nc_server(kind, tmp_path, b"from nc\n") as (nc, url):
        result = cat_retrying("--receive-only", url, data=b"never sent\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"from nc\n"
        assert nc.popen.wait(TIMEOUT) == 0  # our half-close let it finish
    assert nc.stdout == []


def test_send_only_and_receive_only_on_udp() -> None:
    port = closed_port()
    echo = ["socat", f"UDP4-RECVFROM:{port},bind=127.0.0.1,fork", "EXEC:cat"]
    with background(*echo):
        wait_until(lambda: udp_bound(port), "socat to bind")
        url = f"udp4://127.0.0.1:{port}"
        plain = cli("cat", url, data=b"echoed\n")
        assert plain.stdout == b"echoed\n"
        quiet = cli("cat", "--send-only", url, data=b"not printed\n")
        assert quiet.returncode == 0 and quiet.stdout == b""
    with server(
        "cat", "-l", "--receive-only", "udp4://127.0.0.1:0", stdin=subprocess.PIPE
    ) as cat:
        target = cat.bound_url().removeprefix("udp4://")
        assert cat.popen.stdin is not None
        cat.popen.stdin.write(b"not sent\n")
        cat.popen.stdin.flush()
        result = tool("socat", "-T", "0.5", "-", f"UDP4:{target}", data=b"heard\n")
        cat.wait_for("^heard$")
        assert result.stdout == b""


def test_directions_a_fifo_end_lacks_exit_2(tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with background("socat", "-u", f"PIPE:{fifo}", "STDOUT"):  # a reader
        result = cli("cat", "--receive-only", f"fifo://{fifo}")
    assert result.returncode == 2
    assert "cannot receive" in one_line_error(result)
    result = cli("cat", "--send-only", "--receive-only", "tcp4://127.0.0.1:1")
    assert result.returncode == 2


def test_send_only_into_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    with server("cat", "-l", "-v", f"fifo://{fifo}") as reader:
        reader.bound_url()
        result = cli("cat", "--send-only", f"fifo://{fifo}", data=b"one way\n")
        assert result.returncode == 0, result.stderr
        reader.wait_for("^one way$")
        assert reader.popen.wait(TIMEOUT) == 0


# -- -v --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STREAMS)
def test_verbose_cat_connecting(kind: str, tmp_path: Path) -> None:
    with nc_server(kind, tmp_path, b"12345\n") as (nc, url):
        result = cat_retrying("-v", url, data=b"abc\n")
        nc.wait_for("^abc$")
    err = result.stderr.decode()
    assert re.search(rf"#1 connected: {re.escape(url)}.* from \S+", err), err
    assert re.search(r"#1 disconnected: .*: 4 bytes sent, 6 bytes received in", err)


@pytest.mark.parametrize("kind", STREAMS)
def test_verbose_echo_and_relay(kind: str, tmp_path: Path) -> None:
    with server("echo", "-v", listen_url(kind, tmp_path)) as echo:
        target = echo.bound_url()
        relay = packeteer("relay", "-v", "tcp4://127.0.0.1:0", target)
        result = tool("nc", "-N", *nc_argv(relay.bound_url()), data=b"0123456789")
        assert result.stdout == b"0123456789"
        relay.wait_for(r"#1 connected: tcp4://127.0.0.1:\d+ on tcp4://127.0.0.1:\d+")
        relay.wait_for(rf"#1 connected to {re.escape(target)} from ")
        relay.wait_for(r"#1 disconnected: .*: 10 bytes up, 10 bytes down in")
        relay.stop()
        echo.wait_for(r"#1 connected: .* on ")
        echo.wait_for(r"#1 disconnected: .*: 10 bytes received, 10 bytes sent in")


def test_verbose_udp_echo_sums_up_each_sender() -> None:
    with server("echo", "-v", "udp4://127.0.0.1:0") as echo:
        target = echo.bound_url().removeprefix("udp4://")
        result = tool("socat", "-T", "1", "-", f"UDP4:{target}", data=b"ping\n")
        assert result.stdout == b"ping\n"
        echo.wait_for("datagrams from udp4://127.0.0.1")
        echo.stop()
    assert any(re.search(r": 1 datagrams, 5 bytes", line) for line in echo.stderr)


def test_quiet_and_verbose_exclude_each_other() -> None:
    for command in (["echo"], ["cat"], ["relay", "tcp4://127.0.0.1:2"]):
        result = cli(command[0], "-q", "-v", "tcp4://127.0.0.1:1", *command[1:])
        assert result.returncode == 2
        assert "not allowed with" in one_line_error(result)


# -- relay --max-connections -------------------------------------------------------


@pytest.mark.parametrize("kind", STREAMS)
def test_relay_max_connections_refuses_beyond(kind: str, tmp_path: Path) -> None:
    with (
        server("echo", "-q", listen_url(kind, tmp_path)) as echo,
        server(
            "relay", "--max-connections", "1", "tcp4://127.0.0.1:0", echo.bound_url()
        ) as relay,
    ):
        url = relay.bound_url()
        with background(
            "socat", "-", socat_address(url), stdin=subprocess.PIPE
        ) as held:
            assert held.popen.stdin is not None
            held.popen.stdin.write(b"held\n")
            held.popen.stdin.flush()
            held.wait_for("^held$")  # the first is relayed
            refused = tool("nc", "-N", *nc_argv(url), data=b"refused\n")
            assert refused.stdout == b""  # closed at once
            relay.wait_for(r"#2 refused: .*1 connections already \(--max-connections\)")
            held.popen.stdin.close()
            assert held.popen.wait(TIMEOUT) == 0
        relay.wait_for(r"#1 disconnected")
        again = tool("nc", "-N", *nc_argv(url), data=b"room again\n")
        assert again.stdout == b"room again\n"


def test_relay_max_connections_udp_drops_new_senders() -> None:
    with (
        server("echo", "-q", "udp4://127.0.0.1:0") as echo,
        server(
            "relay", "--max-connections", "1", "udp4://127.0.0.1:0", echo.bound_url()
        ) as relay,
    ):
        target = relay.bound_url().removeprefix("udp4://")
        with background("socat", "-", f"UDP4:{target}", stdin=subprocess.PIPE) as first:
            assert first.popen.stdin is not None
            first.popen.stdin.write(b"first\n")
            first.popen.stdin.flush()
            first.wait_for("^first$")
            second = tool("socat", "-T", "0.5", "-", f"UDP4:{target}", data=b"second\n")
            assert second.stdout == b""
            relay.wait_for(r"refused: udp4://127.0.0.1:\d+: 1 senders already")


# -- bench and demo: --json, and a progress bar only on a terminal --------------------


def test_bench_json() -> None:
    import json

    with server("echo", "-q", "tcp4://127.0.0.1:0") as echo:
        result = cli(
            "bench", "--json", "--count", "200", "--bulk", "1", echo.bound_url()
        )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # stdout is the JSON object, nothing else
    assert data["command"] == "bench" and data["behaviour"] == "stream"
    assert (
        data["throughput"]["bytes"] == 1_000_000 and data["throughput"]["mb_per_s"] > 0
    )
    trips = data["round_trips"]
    assert trips["count"] == 200 and trips["size"] == 64
    assert 0 < trips["p50_us"] <= trips["p99_us"]
    result = cli("bench", "--json", "--count", "100", "local://?behaviour=datagram")
    data = json.loads(result.stdout)
    assert data["behaviour"] == "datagram"
    assert data["throughput"]["datagrams"] == 100 and data["throughput"]["size"] == 64


def test_demo_json() -> None:
    import json

    result = cli(
        "demo",
        "--json",
        "--only",
        "anon",
        "--only",
        "udp4",
        "--bulk",
        "1",
        "--round-trips",
        "50",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["command"] == "demo"
    assert data["passed"] == 2 and data["failed"] == 0
    rows = {row["scheme"]: row for row in data["cases"]}
    assert rows["anon"]["result"] == "ok" and rows["anon"]["datagrams_per_s"] is None
    assert rows["udp4"]["datagrams_per_s"] > 0 and rows["udp4"]["round_trips"] == 50


def on_a_terminal(*args: str, hide_tqdm: bool = False) -> tuple[int, bytes, bytes]:
    """Run the CLI with stderr on a pseudo-terminal: (exit code, stdout, what
    the terminal showed)."""
    master, slave = os.openpty()
    # A terminal has a size (a new pty has 0x0, where tqdm draws nothing).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    code = "import sys\n"
    if hide_tqdm:
        code += (
            "sys.modules['tqdm'] = None  # as if the [progress] extra were missing\n"
        )
    code += "from packeteer_trio.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env(),
    )
    os.close(slave)
    shown = b""
    while True:  # read until the child closes its end (EIO on Linux)
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    return proc.wait(TIMEOUT), out, shown


BENCH = ["bench", "anon://", "--count", "20000", "--bulk", "20"]


def test_bench_draws_a_tqdm_bar_on_a_terminal() -> None:
    code, out, shown = on_a_terminal(*BENCH)
    assert code == 0
    assert b"round trips:" in out and b"\r" not in out  # results stay plain
    assert re.search(rb"round trips: +\d+%\|", shown), shown  # tqdm: "label:  40%|##"
    assert b"bench: throughput" in shown


def test_bench_falls_back_to_a_counter_without_tqdm() -> None:
    code, out, shown = on_a_terminal(*BENCH, hide_tqdm=True)
    assert code == 0 and b"round trips:" in out
    assert re.search(
        rb"\r\x1b\[Kround trips: +\d+% \(\d+/20000 round trips\)",
        shown,
    ), shown
    assert b"|" not in shown


def test_demo_draws_on_a_terminal_and_not_on_a_pipe() -> None:
    args = [
        "demo",
        "--only",
        "anon",
        "--only",
        "udp4",
        "--bulk",
        "1",
        "--round-trips",
        "50",
    ]
    code, _, shown = on_a_terminal(*args)
    assert code == 0
    assert re.search(rb"demo \[2/2\] udp4 datagram: +\d+%\|", shown), shown
    piped = cli(*args)
    assert piped.returncode == 0
    assert b"\r" not in piped.stderr and b"\x1b" not in piped.stderr
    assert b"demo [1/2] anon stream: running" in piped.stderr


def test_bench_draws_nothing_when_stderr_is_no_terminal() -> None:
    result = cli(*BENCH)
    assert result.returncode == 0
    assert b"\r" not in result.stderr and b"\x1b" not in result.stderr
    assert result.stderr.decode().splitlines() == [
        "bench: throughput…",
        "bench: round trips…",
    ]


# -- the same flags where a FIFO or datagrams make them mean something ----------------


def test_exec_per_fifo_writer_prints_on_stdout(tmp_path: Path) -> None:
    """A FIFO's reader end cannot answer: the child's stdout is cat's own."""
    fifo = tmp_path / "f"
    with server("cat", "-lk", "-v", "-e", "wc -c", f"fifo://{fifo}") as cat:
        cat.bound_url()
        for number, data in enumerate([b"12345", b"1234567890"], 1):
            result = tool("socat", "-u", "STDIN", f"PIPE:{fifo}", data=data)
            assert result.returncode == 0, result.stderr
            cat.wait_for(rf"#{number} wc -c: exited with status 0")
        wait_until(lambda: len(cat.stdout) == 2, "two counts")
    assert [line.strip() for line in cat.stdout] == ["5", "10"]


def test_keep_open_on_udp_hears_every_sender() -> None:
    with server("cat", "-lk", "-v", "udp4://127.0.0.1:0") as cat:
        target = cat.bound_url().removeprefix("udp4://")
        for word in ("one", "two"):
            tool("socat", "-u", "-", f"UDP4:{target}", data=f"{word}\n".encode())
            cat.wait_for(f"^{word}$")
        cat.stop()
    assert len([line for line in cat.stderr if "datagrams from" in line]) == 2


def test_relay_wait_forgets_an_idle_udp_sender() -> None:
    with (
        server("echo", "-q", "udp4://127.0.0.1:0") as echo,
        server(
            "relay", "-v", "-w", "0.5", "udp4://127.0.0.1:0", echo.bound_url()
        ) as relay,
    ):
        target = relay.bound_url().removeprefix("udp4://")
        result = tool("socat", "-T", "1", "-", f"UDP4:{target}", data=b"ping\n")
        assert result.stdout == b"ping\n"
        relay.wait_for(r"#1 new sender: udp4://127\.0\.0\.1:\d+")
        relay.wait_for(r"#1 closed: udp4://127\.0\.0\.1:\d+: 5 bytes up, 5 bytes down")

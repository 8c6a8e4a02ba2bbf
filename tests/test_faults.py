"""The kernel failing a call: every syscall of the core, with the errnos its
man page lists, injected by ``strace -e inject`` into a running subprocess.

Each row says what the user sees (docs/what-we-test.md has the table):

- *served* / *answered*: the fault is absorbed (retried, waited for, the one
  connection dropped) and the data arrives intact;
- an exception of the errno's class whose message names the URL;
- for servers (``serve()``, ``packeteer echo``/``relay``, datagram echo
  loops): the server keeps serving, and a client after the fault is served.

Always, too: the subject leaks no descriptor (counted from outside through
``/proc``), never hangs (everything under a timeout), never prints a
traceback, and every rule really fired (strace's log counts the injections).
Marked ``faults``: ``pytest -m faults`` runs only these, ``-m "not faults"``
leaves them out.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if sys.platform == "win32":  # pragma: no cover
    pytest.skip(
        "syscall fault injection uses strace: Linux only", allow_module_level=True
    )

from ._faults import (
    DatagramPeer,
    Rule,
    Subject,
    attach_problem,
    cli,
    inject,
    needs,
    strace_problem,
    stream_round_trip,
    traced_run,
    workload,
)
from .conftest import has_ipv6_loopback

pytestmark = [pytest.mark.faults, needs(strace_problem())]

PAYLOAD = bytes(range(256)) * 800  # 200 KB: several sends and receives
ANSWER_WAIT = 0.5  # seconds to wait for a datagram echo that should be lost


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    problem = attach_problem()
    if problem:
        pytest.skip(problem)
    return tmp_path_factory.mktemp("faults")


class Subjects:
    """Subprocesses kept for the whole module, restarted if one died."""

    def __init__(self) -> None:
        self._running: dict[str, tuple[Subject, str]] = {}

    def get(
        self, key: str, argv: list[str], ready: Callable[[Subject], str], **kw: Any
    ) -> tuple[Subject, str]:
        found = self._running.get(key)
        if found is not None and (found[0].dirty or not found[0].alive()):
            found[0].stop()  # a failed test may have left it in any state
            found = None
        if found is None:
            subject = Subject(argv, **kw)
            found = (subject, ready(subject))
            subject.idle_fds = subject.steady_fds()
            self._running[key] = found
        return found

    def stop_all(self) -> list[str]:
        tracebacks = []
        for subject, _ in self._running.values():
            subject.stop()
            tracebacks += subject.tracebacks()
        return tracebacks


@pytest.fixture(scope="module")
def subjects() -> Iterator[Subjects]:
    kept = Subjects()
    yield kept
    assert kept.stop_all() == []


def cli_url(subject: Subject) -> str:
    line = subject.logged(r"^listening on ")
    return re.split(r"[ ,]", line)[2]


def report_url(subject: Subject) -> str:
    return str(subject.report()["ready"])


# A server opens a few things lazily (the CLI its stdout stream, Python its
# imports): a first exchange, untraced, makes its descriptor count steady.
def stream_ready(read_url: Callable[[Subject], str]) -> Callable[[Subject], str]:
    def ready(subject: Subject) -> str:
        url = read_url(subject)
        assert stream_round_trip(url, PAYLOAD) == PAYLOAD
        return url

    return ready


def datagram_ready(
    read_url: Callable[[Subject], str], tmp: Path
) -> Callable[[Subject], str]:
    def ready(subject: Subject) -> str:
        url = read_url(subject)
        peer = DatagramPeer(url, tmp)
        try:
            assert ask_all(peer, 2) == [True, True]
        finally:
            peer.close()
        return url

    return ready


@contextlib.contextmanager
def unharmed(subject: Subject) -> Iterator[None]:
    """The subject survives, leaks no fd and prints no traceback meanwhile.

    Reports of earlier tests are dropped first; if this one fails, the
    subject is restarted for the next.
    """
    fds, lines = subject.idle_fds, len(subject.stderr_lines)
    assert subject.settle_fds(fds) == fds, "not idle before the test"
    while not subject.reports.empty():
        subject.reports.get()
    subject.dirty = True
    yield
    news = "\n".join(subject.stderr_lines[lines:])
    assert subject.alive(), f"the subject died: {news}"
    assert subject.settle_fds(fds) == fds, f"descriptors leaked: {news} " + (
        Path(f"/proc/{subject.pid}/stat").read_text()
        + Path(f"/proc/{subject.pid}/wchan").read_text()
    )
    assert "Traceback" not in news, news
    subject.dirty = False


def stream_url(scheme: str, tmp: Path) -> str:
    if scheme == "tcp4":
        return "tcp4://127.0.0.1:0"
    if scheme == "tcp6":
        return "tcp6://[::1]:0"
    if scheme == "local":
        return f"local://{tmp}/s-{secrets.token_hex(4)}.sock"
    return f"local:///%00packeteer-faults-{os.getpid()}-{secrets.token_hex(4)}"


def datagram_url(scheme: str, tmp: Path) -> str:
    if scheme == "udp4":
        return "udp4://127.0.0.1:0"
    return f"local://{tmp}/d-{secrets.token_hex(4)}.sock?behaviour=datagram"


ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
STREAM_SCHEMES = ["tcp4", pytest.param("tcp6", marks=ipv6), "local", "abstract"]

# -- stream echo server: packeteer echo --------------------------------------

SERVED, LOGGED, BROKEN = "served", "served, logged once", "that connection ends"
STREAM_SERVER_ROWS = [
    ("accept4", "EAGAIN", "1..3", SERVED),
    ("accept4", "EINTR", "1..3", SERVED),
    ("accept4", "ECONNABORTED", "1..3", SERVED),
    ("accept4", "EPROTO", "1", SERVED),
    ("accept4", "EPERM", "1", SERVED),
    ("accept4", "EMFILE", "1..2", LOGGED),
    ("accept4", "ENFILE", "1", LOGGED),
    ("accept4", "ENOBUFS", "1", LOGGED),
    ("accept4", "ENOMEM", "1", LOGGED),
    ("recvfrom", "EINTR", "1..3", SERVED),
    ("recvfrom", "EAGAIN", "1..3", SERVED),
    ("recvfrom", "ENOMEM", "1..3", SERVED),
    ("recvfrom", "ECONNRESET", "1", BROKEN),
    ("sendto", "EINTR", "1..3", SERVED),
    ("sendto", "EAGAIN", "1..3", SERVED),
    ("sendto", "ENOBUFS", "1..3", SERVED),
    ("sendto", "ENOMEM", "1..3", SERVED),
    ("sendto", "EPIPE", "1", BROKEN),
    ("sendto", "ECONNRESET", "1", BROKEN),
    ("shutdown", "ENOTCONN", "1", SERVED),
]


@pytest.mark.parametrize("scheme", STREAM_SCHEMES)
@pytest.mark.parametrize(("syscall", "error", "when", "outcome"), STREAM_SERVER_ROWS)
def test_echo_server(
    subjects: Subjects,
    tmp: Path,
    scheme: str,
    syscall: str,
    error: str,
    when: str,
    outcome: str,
) -> None:
    server, url = subjects.get(
        f"echo {scheme}",
        cli("echo", stream_url(scheme, tmp)),
        stream_ready(cli_url),
    )
    with unharmed(server):
        lines = len(server.stderr_lines)
        with inject(server, (syscall, error, when)) as tampering:
            echoed = stream_round_trip(url, PAYLOAD)
        assert tampering.injected >= 1
        if outcome == BROKEN:
            assert PAYLOAD.startswith(echoed) and len(echoed) < len(PAYLOAD)
            strerror = os.strerror(getattr(errno, error))
            server.logged(rf"#\d+ error: {re.escape(url)}: {strerror}", lines)
        else:
            assert echoed == PAYLOAD
        if outcome == LOGGED:
            server.logged(f"accept failed with {error}", lines)
            server.logged("accepting again after", lines)
        # And the next client is served as if nothing happened.
        assert stream_round_trip(url, PAYLOAD) == PAYLOAD


# -- datagram echo server: packeteer echo udp:// / local://?behaviour=datagram --

ANSWERED, LOST, DROPPED = "answered", "that datagram lost, logged", "dropped"
DATAGRAM_SERVER_ROWS = [
    ("recvfrom", "EINTR", "1..3", ANSWERED),
    ("recvfrom", "EAGAIN", "1..3", ANSWERED),
    ("recvfrom", "ENOMEM", "1..3", ANSWERED),
    ("sendto", "EINTR", "1..3", ANSWERED),
    ("sendto", "EAGAIN", "1..3", ANSWERED),
    ("sendto", "ENOBUFS", "1..3", ANSWERED),
    ("sendto", "ENOMEM", "1..3", ANSWERED),
    ("sendto", "ENOBUFS", "1+", DROPPED),
    ("sendto", "EPERM", "1", LOST),
    ("sendto", "ECONNREFUSED", "1", LOST),
]


def ask_all(peer: DatagramPeer, count: int, wait: float = 2.0) -> list[bool]:
    return [peer.ask(b"probe %d" % i, wait) is not None for i in range(count)]


@pytest.mark.parametrize("scheme", ["udp4", "local"])
@pytest.mark.parametrize(("syscall", "error", "when", "outcome"), DATAGRAM_SERVER_ROWS)
def test_datagram_echo_server(
    subjects: Subjects,
    tmp: Path,
    scheme: str,
    syscall: str,
    error: str,
    when: str,
    outcome: str,
) -> None:
    server, url = subjects.get(
        f"echo {scheme} datagram",
        cli("echo", datagram_url(scheme, tmp)),
        datagram_ready(cli_url, tmp),
    )
    peer = DatagramPeer(url, tmp)
    try:
        with unharmed(server):
            lines = len(server.stderr_lines)
            with inject(server, (syscall, error, when)) as tampering:
                if outcome == ANSWERED:
                    assert ask_all(peer, 5) == [True] * 5
                elif outcome == LOST:
                    assert ask_all(peer, 3, ANSWER_WAIT) == [False, True, True]
                else:
                    assert ask_all(peer, 2, ANSWER_WAIT) == [False, False]
            assert tampering.injected >= 1
            if outcome == LOST:
                strerror = os.strerror(getattr(errno, error))
                server.logged(
                    rf"(?i)error: {re.escape(url)}: send_many to .*{strerror}", lines
                )
            if outcome == DROPPED:
                server.logged(rf"{re.escape(url)}: dropped 1 datagram\(s\)", lines)
            # The server answers as before.
            assert ask_all(peer, 3) == [True] * 3
    finally:
        peer.close()


# -- packeteer demo, as issue 21 found them --------------------------------------


@pytest.mark.parametrize(
    ("only", "rule"),
    [
        ("tcp4", ("connect", "EINTR", "1")),
        pytest.param("tcp6", ("connect", "EINTR", "1..3"), marks=ipv6),
        ("local:path", ("connect", "EINTR", "1")),
        ("udp4", ("sendto", "ENOBUFS", "50..52")),
        pytest.param("udp6", ("sendto", "ENOMEM", "50"), marks=ipv6),
        ("local:path", ("sendto", "ENOBUFS", "50..52")),
    ],
)
def test_demo(tmp: Path, only: str, rule: Rule) -> None:
    """``packeteer demo`` under strace from its start: every row still OK."""
    argv = cli("demo", "--only", only, "--round-trips", "300", "--bulk", "1")
    result, tampering = traced_run(argv, rule)
    assert tampering.injected >= 1
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\n[1-9]\d* passed, 0 failed", result.stdout), result.stdout
    assert "Traceback" not in result.stderr


# -- datagram endpoints of both faces (send_to/receive_from, send_many/...) ----

ENDPOINT_ROWS = [
    ("recvfrom", "ENOMEM", "1..3", ANSWERED),
    ("recvfrom", "EINTR", "1..3", ANSWERED),
    ("sendto", "ENOBUFS", "1..3", ANSWERED),
    ("sendto", "ENOMEM", "1..3", ANSWERED),
    ("sendto", "EAGAIN", "1..3", ANSWERED),
    ("sendto", "EPERM", "1", LOST),
    ("recvfrom", "ECONNREFUSED", "1", "reported, then answered"),
]
FACES = ["trio", "anyio-asyncio", "anyio-trio"]


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("mode", ["one", "many"])
@pytest.mark.parametrize(("syscall", "error", "when", "outcome"), ENDPOINT_ROWS)
def test_datagram_endpoint(
    subjects: Subjects,
    tmp: Path,
    face: str,
    mode: str,
    syscall: str,
    error: str,
    when: str,
    outcome: str,
) -> None:
    server, url = subjects.get(
        f"dgram {face} {mode}",
        workload("dgram", face, "udp4://127.0.0.1:0", mode),
        datagram_ready(report_url, tmp),
    )
    peer = DatagramPeer(url, tmp)
    try:
        with unharmed(server):
            with inject(server, (syscall, error, when)) as tampering:
                if outcome == LOST:
                    assert ask_all(peer, 3, ANSWER_WAIT) == [False, True, True]
                else:
                    assert ask_all(peer, 4) == [True] * 4
            assert tampering.injected >= 1
            reports = []
            while not server.reports.empty():
                reports.append(server.reports.get())
            if outcome == ANSWERED:
                assert reports == []
            else:
                [report] = reports
                assert report["errno"] == getattr(errno, error)
                assert report["message"].startswith(f"[Errno {report['errno']}] {url}:")
            assert ask_all(peer, 2) == [True] * 2
    finally:
        peer.close()


# -- serve() under load, both faces ---------------------------------------------


LOAD_RULES: dict[str, list[Rule]] = {
    "transient": [
        ("accept4", "ECONNABORTED", "2+4"),
        ("recvfrom", "EAGAIN", "3+5"),
        ("sendto", "EINTR", "2+5"),
    ],
    "memory": [
        ("accept4", "EMFILE", "2+6"),
        ("recvfrom", "ENOMEM", "3+5"),
        ("sendto", "ENOBUFS", "2+5"),
    ],
}


def concurrent_round_trips(url: str, count: int) -> list[bytes]:
    results = [b""] * count

    def client(index: int) -> None:
        results[index] = stream_round_trip(url, PAYLOAD)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("scheme", ["tcp4", "local"])
@pytest.mark.parametrize("faults", ["transient", "memory"])
def test_serve_under_load(
    subjects: Subjects, tmp: Path, face: str, scheme: str, faults: str
) -> None:
    """20 clients at once, 200 KB each, while every few accepts, receives
    and sends fail with a transient errno: every client is served.

    Except on asyncio, whose transports (which anyio's streams use there)
    end a connection on any error but EAGAIN and EINTR: under ENOMEM and
    ENOBUFS some connections end early (BrokenResourceError in the
    handler), and the server goes on serving."""
    server, url = subjects.get(
        f"serve {face} {scheme}",
        workload("serve", face, stream_url(scheme, tmp)),
        stream_ready(report_url),
    )
    with unharmed(server):
        with inject(server, *LOAD_RULES[faults]) as tampering:
            results = concurrent_round_trips(url, 20)
        assert tampering.injected >= 10
        reports = []
        while not server.reports.empty():
            reports.append(server.reports.get())
        assert results == [PAYLOAD] * 20
        assert reports == []
        assert stream_round_trip(url, PAYLOAD) == PAYLOAD


# -- relay: packeteer relay SOURCE TARGET --------------------------------------

REFUSED = "that client is closed, logged"
RELAY_ROWS = [
    ("splice", "EINTR", "1..3", SERVED),
    ("splice", "EAGAIN", "1..3", SERVED),
    ("splice", "ENOMEM", "1..3", SERVED),
    ("splice", "EINVAL", "1", SERVED),  # the kernel cannot splice: copy instead
    ("connect", "EINTR", "1", SERVED),
    ("connect", "EINTR", "1..3", SERVED),
    ("connect", "ECONNREFUSED", "1", REFUSED),
    ("socket", "EMFILE", "1", REFUSED),
    ("accept4", "EMFILE", "1", LOGGED),
    ("accept4", "ECONNABORTED", "1", SERVED),
]


@pytest.mark.parametrize(("source", "target"), [("tcp4", "local"), ("local", "tcp4")])
@pytest.mark.parametrize(("syscall", "error", "when", "outcome"), RELAY_ROWS)
def test_relay(
    subjects: Subjects,
    tmp: Path,
    source: str,
    target: str,
    syscall: str,
    error: str,
    when: str,
    outcome: str,
) -> None:
    _, target_url = subjects.get(
        f"echo {target}", cli("echo", stream_url(target, tmp)), stream_ready(cli_url)
    )
    relay, url = subjects.get(
        f"relay {source} {target}",
        cli("relay", stream_url(source, tmp), target_url),
        stream_ready(cli_url),
    )
    with unharmed(relay):
        lines = len(relay.stderr_lines)
        with inject(relay, (syscall, error, when)) as tampering:
            echoed = stream_round_trip(url, PAYLOAD)
        assert tampering.injected >= 1
        if outcome == REFUSED:
            assert echoed == b""
            strerror = os.strerror(getattr(errno, error))
            relay.logged(
                rf"error: {re.escape(target_url)}: connect failed: {strerror}", lines
            )
        else:
            assert echoed == PAYLOAD
        if outcome == LOGGED:
            relay.logged(f"accept failed with {error}", lines)
        assert stream_round_trip(url, PAYLOAD) == PAYLOAD


# -- the verbs as a client calls them: connect, listen, open_datagram … --------


@pytest.fixture(scope="module")
def peers(subjects: Subjects, tmp: Path) -> dict[str, str]:
    """Untraced echo servers for the clients, by scheme."""
    urls = {}
    for scheme in ["tcp4", "tcp6", "local", "abstract"]:
        if scheme == "tcp6" and not has_ipv6_loopback():
            continue
        urls[scheme] = subjects.get(
            f"echo {scheme}",
            cli("echo", stream_url(scheme, tmp)),
            stream_ready(cli_url),
        )[1]
    for scheme in ["udp4", "local"]:
        urls[f"{scheme} datagram"] = subjects.get(
            f"echo {scheme} datagram",
            cli("echo", datagram_url(scheme, tmp)),
            datagram_ready(cli_url, tmp),
        )[1]
    return urls


def client(subjects: Subjects, face: str, peers: dict[str, str], tmp: Path) -> Subject:
    subject, _ = subjects.get(
        f"client {face}", workload("client", face), report_url, stdin=True
    )
    if not subject.warmed:
        # Every command once, untraced: nothing is imported later under strace.
        warm = [
            {"op": "connect", "url": peers["tcp4"]},
            {"op": "connect", "url": peers["local"]},
            {"op": "listen", "url": "tcp4://127.0.0.1:0"},
            {"op": "listen", "url": stream_url("local", tmp)},
            {"op": "open_datagram", "url": "udp4://127.0.0.1:0"},
            {"op": "dgram", "url": peers["udp4 datagram"]},
            {"op": "dgram", "url": peers["local datagram"]},
        ]
        warm += [
            {"op": "pipe", "url": "anon://"},
            {"op": "pipe", "url": "local://"},
            {"op": "pipe", "url": f"fifo://{tmp}/warm.fifo"},
        ]
        if face != "trio":
            warm.append({"op": "fds", "url": stream_url("local", tmp)})
        for request in warm:
            subject.command(request)
            assert subject.report().get("ok"), request
        subject.warmed = True
        subject.idle_fds = subject.steady_fds()
    return subject


def run_command(
    subject: Subject, request: dict[str, Any], *rules: Rule, paths: tuple[str, ...] = ()
) -> dict[str, Any]:
    with unharmed(subject):
        with inject(subject, *rules, paths=paths) as tampering:
            subject.command(request)
            result = subject.report()
        assert tampering.injected >= 1, tampering.log
    return result


def assert_failed(
    result: dict[str, Any], exception: str, url: str, code: str, group: bool = False
) -> None:
    """The command failed with *exception* of errno *code*, naming *url*,
    and (unless *group*) not wrapped in an exception group."""
    assert result.get("error") == exception, result
    assert group or not result["group"], result
    if code:
        assert result["errno"] == getattr(errno, code), result
    assert url.split("?")[0] in result["message"], result


OK = "ok"
CONNECT_ROWS: list[tuple[str, str, str, dict[str, str]]] = [
    # (syscall, errno, when, {scheme kind or face: outcome}; "*" for the rest)
    ("connect", "EINTR", "1", {"*": OK}),
    ("connect", "EINTR", "1..3", {"*": OK}),
    ("connect", "EINTR", "1+", {"*": "InterruptedError"}),
    ("connect", "EAGAIN", "1..3", {"tcp": "BlockingIOError", "local": OK}),
    ("connect", "ECONNREFUSED", "1", {"*": "ConnectionRefusedError"}),
    ("connect", "ETIMEDOUT", "1", {"*": "TimeoutError"}),
    ("connect", "ENETUNREACH", "1", {"tcp": "OSError", "local": "OSError"}),
    ("connect", "EACCES", "1", {"*": "PermissionError"}),
    (
        "connect",
        "ENOENT",
        "1",
        {"local": "FileNotFoundError", "tcp": "FileNotFoundError"},
    ),
    ("socket", "EMFILE", "1", {"*": "OSError"}),
    ("socket", "ENFILE", "1", {"*": "OSError"}),
    ("socket", "ENOBUFS", "1", {"*": "OSError"}),
    ("socket", "ENOMEM", "1", {"*": "OSError"}),
    ("socket", "EACCES", "1", {"*": "PermissionError"}),
    ("sendto", "EINTR", "1..3", {"*": OK}),
    ("sendto", "EAGAIN", "1..3", {"*": OK}),
    ("sendto", "ENOBUFS", "1..3", {"*": OK}),
    ("sendto", "EPIPE", "1", {"*": "BrokenResourceError"}),
    ("recvfrom", "EINTR", "1..3", {"*": OK}),
    ("recvfrom", "ENOMEM", "1..3", {"*": OK}),
    ("recvfrom", "ECONNRESET", "1", {"*": "BrokenResourceError"}),
]
CLIENT_FACES = ["trio", "anyio-asyncio"]


def outcome_for(outcomes: dict[str, str], *keys: str) -> str:
    for key in keys:
        if key in outcomes:
            return outcomes[key]
    return outcomes["*"]


@pytest.mark.parametrize("face", CLIENT_FACES)
@pytest.mark.parametrize("scheme", STREAM_SCHEMES)
@pytest.mark.parametrize(("syscall", "error", "when", "outcomes"), CONNECT_ROWS)
def test_connect(
    subjects: Subjects,
    peers: dict[str, str],
    tmp: Path,
    face: str,
    scheme: str,
    syscall: str,
    error: str,
    when: str,
    outcomes: dict[str, str],
) -> None:
    """connect(), then 200 KB both ways, under a fault of the client's calls."""
    subject = client(subjects, face, peers, tmp)
    url = peers[scheme]
    kind = "tcp" if scheme.startswith("tcp") else "local"
    expected = outcome_for(outcomes, face, kind)
    request = {"op": "connect", "url": url, "size": len(PAYLOAD)}
    if face == "anyio-asyncio" and kind == "local" and syscall == "recvfrom":
        # The read-ahead AF_UNIX stream reads with recvmsg (descriptors a
        # peer passes must stay with their bytes, docs/anyio.md).
        syscall = "recvmsg"
    result = run_command(subject, request, (syscall, error, when))
    if expected == OK:
        assert result == {"ok": True, "bytes": len(PAYLOAD)}
    elif expected == "BrokenResourceError":
        assert_failed(result, expected, url, "")
        assert os.strerror(getattr(errno, error)) in result["message"]
    else:
        assert_failed(result, expected, url, error)


OPEN_OPS = [
    ("listen", "tcp4"),
    ("listen", "local"),
    ("open_datagram", "udp4"),
    ("open_datagram", "local"),
    ("connect_datagram", "udp4"),
    ("connect_datagram", "local"),
]
OPEN_ROWS = [
    ("socket", "EMFILE", "1", "OSError"),
    ("socket", "ENFILE", "1", "OSError"),
    ("socket", "ENOBUFS", "1", "OSError"),
    ("socket", "ENOMEM", "1", "OSError"),
    ("socket", "EACCES", "1", "PermissionError"),
    ("bind", "EACCES", "1", "PermissionError"),
    ("bind", "EADDRINUSE", "1+", "OSError"),
    ("bind", "EADDRNOTAVAIL", "1", "OSError"),
    ("bind", "ENOMEM", "1", "OSError"),
    ("listen", "EADDRINUSE", "1+", "OSError"),
]


def applies(op: str, scheme: str, syscall: str) -> bool:
    if syscall == "listen":
        return op == "listen"
    # A connected UDP socket is bound by connect(2), not bind(2).
    return not (syscall == "bind" and op == "connect_datagram" and scheme == "udp4")


@pytest.mark.parametrize("face", CLIENT_FACES)
@pytest.mark.parametrize(
    ("op", "scheme", "syscall", "error", "when", "expected"),
    [
        (op, scheme, *row)
        for row in OPEN_ROWS
        for op, scheme in OPEN_OPS
        if applies(op, scheme, row[0])
    ],
)
def test_open(
    subjects: Subjects,
    peers: dict[str, str],
    tmp: Path,
    face: str,
    op: str,
    scheme: str,
    syscall: str,
    error: str,
    when: str,
    expected: str,
) -> None:
    """listen / open_datagram / connect_datagram: an error of the errno's
    class naming the URL, no descriptor leaked, no socket file left."""
    subject = client(subjects, face, peers, tmp)
    if op == "listen":
        url = stream_url(scheme, tmp)
    elif op == "open_datagram":
        url = datagram_url(scheme, tmp)
    else:
        url = peers[f"{scheme} datagram"]
    before = set(os.listdir(tmp))
    result = run_command(subject, {"op": op, "url": url}, (syscall, error, when))
    assert_failed(result, expected, url, error)
    assert set(os.listdir(tmp)) == before


def test_listen_retries_a_taken_ephemeral_port(
    subjects: Subjects, peers: dict[str, str], tmp: Path
) -> None:
    """tcp listen on port 0 binds every family on one port; a port taken in
    one family (EADDRINUSE) is retried on another."""
    subject = client(subjects, "trio", peers, tmp)
    request = {"op": "listen", "url": "tcp4://127.0.0.1:0"}
    assert run_command(subject, request, ("bind", "EADDRINUSE", "1..3"))["ok"]


# -- pipes: anon://, local:// (unnamed pair), fifo:// ----------------------------

PIPE_ROWS = [
    ("read", "EINTR", "1..3", OK),
    ("read", "EAGAIN", "1..3", OK),
    ("read", "EIO", "1", "BrokenResourceError"),
    ("write", "EINTR", "1..3", OK),
    ("write", "EAGAIN", "1..3", OK),
    ("write", "ENOBUFS", "1..3", OK),
    ("write", "EPIPE", "1", "BrokenResourceError"),
]


@pytest.mark.parametrize("face", CLIENT_FACES)
@pytest.mark.parametrize("url_kind", ["anon", "local", "fifo"])
@pytest.mark.parametrize(("syscall", "error", "when", "expected"), PIPE_ROWS)
def test_pipe(
    subjects: Subjects,
    peers: dict[str, str],
    tmp: Path,
    face: str,
    url_kind: str,
    syscall: str,
    error: str,
    when: str,
    expected: str,
) -> None:
    """1 MB through a pipe, in one process: the trio face, and the anyio
    face on asyncio (read ahead by the loop's reader callback)."""
    subject = client(subjects, face, peers, tmp)
    paths: tuple[str, ...] = ()
    if url_kind == "fifo":
        path = str(tmp / f"p-{secrets.token_hex(4)}.fifo")
        url, paths = f"fifo://{path}", (path,)
    else:
        url = f"{url_kind}://"
    request = {"op": "pipe", "url": url}
    result = run_command(subject, request, (syscall, error, when), paths=paths)
    if expected == OK:
        assert result == {"ok": True}
    else:  # (from the workload's nursery of a sender and a receiver: a group)
        assert_failed(result, expected, url, "", group=True)
        assert os.strerror(getattr(errno, error)) in result["message"]
    assert not any(
        name.endswith(".fifo") and name != "warm.fifo" for name in os.listdir(tmp)
    )


FIFO_ROWS = [
    # openat: the first is listen()'s reader, the second connect()'s writer
    ("openat", "EINTR", "1..2", OK),
    ("openat", "EACCES", "1", "PermissionError"),
    ("openat", "EMFILE", "1", "OSError"),
    ("openat", "ENFILE", "2", "OSError"),
    ("openat", "ENOMEM", "2", "OSError"),
    ("openat", "ENXIO", "2", "ConnectionRefusedError"),
    ("mknodat", "EACCES", "1", "PermissionError"),
    ("mknodat", "ENOSPC", "1", "OSError"),
]


@pytest.mark.parametrize(("syscall", "error", "when", "expected"), FIFO_ROWS)
def test_fifo(
    subjects: Subjects,
    peers: dict[str, str],
    tmp: Path,
    syscall: str,
    error: str,
    when: str,
    expected: str,
) -> None:
    """fifo:// listen, connect and 1 MB through, faults only on its path."""
    subject = client(subjects, "trio", peers, tmp)
    path = tmp / f"f-{secrets.token_hex(4)}.fifo"
    url = f"fifo://{path}"
    request = {"op": "pipe", "url": url}
    result = run_command(subject, request, (syscall, error, when), paths=(str(path),))
    if expected == OK:
        assert result == {"ok": True}
    elif expected == "ConnectionRefusedError":  # ENXIO: no reader
        assert_failed(result, expected, url, "ECONNREFUSED")
    else:
        assert_failed(result, expected, url, error)
    assert not path.exists()


@pytest.mark.parametrize("kind", ["local", "fifo"])
@pytest.mark.parametrize(
    ("syscall", "error"),
    [
        ("rename", "EACCES"),
        ("rename", "EBUSY"),
        ("unlink", "EACCES"),
        ("unlink", "EBUSY"),
    ],
)
def test_listener_cannot_remove_its_file(
    subjects: Subjects,
    peers: dict[str, str],
    tmp: Path,
    kind: str,
    syscall: str,
    error: str,
) -> None:
    """Closing a listener never raises. Its file is removed by renaming it to
    a private name, checking it there, and unlinking that: if the rename
    fails the file stays where it was; if the unlink fails it is put back
    (with link(), then the private name is unlinked: the fault hit the first
    unlink only)."""
    subject = client(subjects, "trio", peers, tmp)
    name = f"r-{secrets.token_hex(4)}.{kind}"
    url = f"{kind}://{tmp}/{name}"
    request = {"op": "listen" if kind == "local" else "pipe", "url": url}
    # rename names our path; the unlink is of the private name: the only one.
    paths = (str(tmp / name),) if syscall == "rename" else ()
    result = run_command(subject, request, (syscall, error, "1"), paths=paths)
    assert result["ok"], result
    left = [entry for entry in os.listdir(tmp) if name in entry]
    assert left == [name]
    os.unlink(tmp / left[0])


# trio.run() makes socketpairs of its own (its wakeup channels) before the
# command's: the fault goes to the command's, the last one.
SPECIAL_ROWS = [
    ("socketpair", "EMFILE", "connect", "local://"),
    ("socketpair", "ENFILE", "open_datagram", "local://?behaviour=datagram"),
    ("pipe2", "EMFILE", "connect", "anon://"),
    ("pipe2", "ENFILE", "connect", "anon://"),
]


@pytest.mark.parametrize(("syscall", "error", "op", "url"), SPECIAL_ROWS)
def test_pairs(
    subjects: Subjects,
    peers: dict[str, str],
    tmp: Path,
    syscall: str,
    error: str,
    op: str,
    url: str,
) -> None:
    """No descriptors for an unnamed pair or a pipe: OSError naming the URL."""
    subject = client(subjects, "trio", peers, tmp)
    request = {"op": "pipe" if op == "connect" else op, "url": url}
    with inject(subject, (syscall, error, "65535")) as counting:  # never fires
        subject.command(request)
        assert subject.report()["ok"]
    last = str(counting.log.count(f"{syscall}("))
    result = run_command(subject, request, (syscall, error, last))
    assert_failed(result, "OSError", url, error)


@pytest.mark.parametrize("face", CLIENT_FACES)
@pytest.mark.parametrize("scheme", ["udp4", "local"])
@pytest.mark.parametrize(
    ("syscall", "error", "when"),
    [
        ("sendto", "ENOBUFS", "1..3"),
        ("sendto", "ENOMEM", "1..2"),
        ("recvfrom", "ENOMEM", "1..3"),
    ],
)
def test_datagram_channel(
    subjects: Subjects,
    peers: dict[str, str],
    tmp: Path,
    face: str,
    scheme: str,
    syscall: str,
    error: str,
    when: str,
) -> None:
    """connect_datagram()'s send and receive wait out a memory shortage."""
    subject = client(subjects, face, peers, tmp)
    request = {"op": "dgram", "url": peers[f"{scheme} datagram"]}
    if face == "anyio-asyncio" and scheme == "local" and syscall == "recvfrom":
        # Read ahead with recvmsg: descriptors a peer passes must stay with
        # their datagram (docs/anyio.md).
        syscall = "recvmsg"
    assert run_command(subject, request, (syscall, error, when)) == {"ok": True}


FDS_ROWS = [
    ("sendmsg", "EINTR", "1..3", {"*": OK}),
    ("sendmsg", "EAGAIN", "1..3", {"*": OK}),
    ("sendmsg", "ENOBUFS", "1..3", {"*": OK}),
    ("sendmsg", "EPIPE", "1", {"*": "BrokenResourceError"}),
    ("recvmsg", "EINTR", "1..3", {"*": OK}),
    ("recvmsg", "ENOMEM", "1..3", {"*": OK}),
]


@pytest.mark.parametrize("face", ["anyio-asyncio", "anyio-trio"])
@pytest.mark.parametrize(("syscall", "error", "when", "outcomes"), FDS_ROWS)
def test_send_fds(
    subjects: Subjects,
    peers: dict[str, str],
    tmp: Path,
    face: str,
    syscall: str,
    error: str,
    when: str,
    outcomes: dict[str, str],
) -> None:
    """send_fds / receive_fds (sendmsg/recvmsg with SCM_RIGHTS): the shared
    core (_fdpass) on both backends."""
    subject = client(subjects, face, peers, tmp)
    url = stream_url("local", tmp)
    result = run_command(subject, {"op": "fds", "url": url}, (syscall, error, when))
    expected = outcome_for(outcomes, face)
    if expected == OK:
        assert result == {"ok": True}
    else:
        assert_failed(result, expected, url, "")

"""Hostile input: fuzzed URLs, files in the way, symlinks, modes, long paths,
peers of another uid, and odd datagrams.

The fuzzed URLs go to ``connect``, ``listen`` and ``open_datagram`` for real,
so they are confined first: a tcp/udp host that is not 127.0.0.1, ::1 or
localhost is replaced by the loopback address of its family, a port by one of
ours (a listener, or a port we hold bound but not listening) or by 0 for
listening, and every path or abstract name by one of ours in a temporary
directory. Schemes outside the confined set (fd, tun, tap, tls+tcp, anything
registered later) are only parsed. So nothing here ever leaves the machine,
touches another process's socket, or creates a file outside tmp.
"""

from __future__ import annotations

import errno
import gc
import os
import random
import socket
import stat
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import packeteer_trio as pt
from packeteer_trio import URL, InvalidURL
from packeteer_trio._registry import names as scheme_names

from .conftest import has_ipv6_loopback, open_fds

LINUX = sys.platform.startswith("linux")
files = pytest.mark.posix_only(reason="local:// and fifo:// files are POSIX-only")
# The fuzz's confinement targets include an AF_UNIX listener and a FIFO.
fuzz_targets = pytest.mark.posix_only(
    reason="the fuzz targets are POSIX endpoints (AF_UNIX, FIFO); no pipe:// "
    "variant yet"
)
EXAMPLES = 10_000
CONFINED = frozenset(
    {"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "local", "fifo", "anon"}
)
# ::1 with a zone: the zone must reach the socket (the kernel ignores it there).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost", "::1%lo"})
Verb = Callable[[Any], Awaitable[Any]]
VERBS: dict[str, Verb] = {
    "connect": pt.connect,
    "listen": pt.listen,
    "open_datagram": pt.open_datagram,
}


# --- URL fuzzing: the strategies --------------------------------------------

SEEDS = [
    "tcp://127.0.0.1:80",
    "tcp4://127.0.0.1:8080?blocking",
    "tcp6://[::1]:443",
    "tcp://localhost:1#fragment",
    "tcp://:0",
    "tcp://example.com:80",
    "udp4://127.0.0.1:53",
    "udp6://[::1]:0",
    "udp://localhost:9?blocking=no",
    "local:///tmp/x.sock",
    "local:///tmp/x.sock?mode=0600",
    "local:///%00abstract",
    "local://",
    "local:///tmp/d.sock?behaviour=datagram&nofollow",
    "local://?behaviour=dgram",
    "fifo:///tmp/f?mode=0644",
    "fifo:///tmp/f?nofollow=1",
    "anon://",
    "pipe:///name",
    "fd:///3",
    "fd://listen/web",
    "tun:///tun7",
    "tap:///tap0?mtu=1400",
    "tls+tcp://localhost:443",
]
ODD = [
    "%", "%0", "%00", "%zz", "%80", "%ff", "%2f", "%25", "%5b", "%3a", "[", "]",
    ":", "@", "?", "#", "&", "=", "/", "//", "\\", "\x00", "\ud800", "\udc80",
    "\udfff", " ", "\n", "\u0663", "\uff54", "..", "0x7f", "-", "+", "\u00e9",
]  # fmt: skip
KEYS = ["mode", "behaviour", "blocking", "nofollow", "x", "MODE", ""]
VALUES = ["0600", "0777", "999", "0o600", "6_0_0", "-0", "datagram", "stream",
          "dgram", "yes", "no", "1", "0", "", "%30600"]  # fmt: skip
HOSTS = ["127.0.0.1", "[::1]", "localhost", "", "[::1%25lo]", "[fe80::1%eth0]",
         "127.1", "0x7f000001", "[v1.x]", "::1", "256.1.1.1", "LOCALHOST",
         "example.com", "[::ffff:127.0.0.1]", "[::1%lo]", "[::1%25]",
         "[::1%25%25]", "[FE80::1%25Eth0]", "1.2.3.4.5", "010.1.1.1", "2130706433",
         "a.123"]  # fmt: skip

PORTS = ["", ":", ":0", ":1", ":65535", ":65536", ":99999", ":-1", ":\u0663", ": 1",
         ":80x", ":0080", ":1:2", ":" + "9" * 4301, ":" + "0" * 4400 + "1"]  # fmt: skip
SEPARATORS = ["://", "://", "://", ":/", ":", "", ":///"]
FRAGMENTS = ["", "", "#", "#frag", "#%80", "#a#b", "#?x"]
SCHEMES = [*scheme_names(), "TCP", "Local", "http", "x", "", "1a"]


def _word(rnd: random.Random) -> str:
    """A plain word, an odd piece, or random characters from all of Unicode."""
    roll = rnd.random()
    if roll < 0.5:
        return "".join(rnd.choices("abcxyz019-._~", k=rnd.randrange(1, 8)))
    if roll < 0.8:
        return rnd.choice(ODD)
    return "".join(chr(rnd.randrange(0x110000)) for _ in range(rnd.randrange(5)))


def url_like(seed: int) -> str:
    """A string shaped like a URL: known and unknown schemes, odd hosts and
    ports, paths with escapes, options and fragments, junk in every place.

    Hypothesis draws the seed and the grammar is walked with ``random``: a
    draw costs hypothesis far more than a whole string costs here.
    """
    rnd = random.Random(seed)
    separator = "://" if rnd.random() < 0.8 else rnd.choice(SEPARATORS)
    host = rnd.choice(HOSTS) if rnd.random() < 0.7 else _word(rnd)
    port = f":{rnd.randrange(65536)}" if rnd.random() < 0.5 else rnd.choice(PORTS)
    path = "/" + "/".join(_word(rnd) for _ in range(rnd.randrange(4)))
    options = [
        f"{rnd.choice(KEYS)}={rnd.choice(VALUES)}" for _ in range(rnd.randrange(3))
    ]
    query = "?" + "&".join(options) if options else ""
    return (
        f"{rnd.choice(SCHEMES)}{separator}{host}{port}{path}{query}"
        f"{rnd.choice(FRAGMENTS)}"
    )


def mutate(seed: int) -> str:
    """A valid URL with one to four random edits."""
    rnd = random.Random(seed)
    text = rnd.choice(SEEDS)
    for _ in range(rnd.randint(1, 4)):
        at = rnd.randint(0, len(text))
        end = rnd.randint(at, min(len(text), at + 8))
        operation = rnd.choice(
            ["insert", "delete", "replace", "repeat", "case", "escape", "long"]
        )
        if operation == "insert":
            text = text[:at] + _word(rnd) + text[at:]
        elif operation == "delete":
            text = text[:at] + text[end:]
        elif operation == "replace":
            text = text[:at] + _word(rnd) + text[end:]
        elif operation == "repeat":
            text = text[:end] + text[at:end] * rnd.randint(1, 3) + text[end:]
        elif operation == "case":
            text = text[:at] + text[at:end].swapcase() + text[end:]
        elif operation == "escape":
            escaped = "".join(f"%{ord(char) % 256:02X}" for char in text[at:end])
            text = text[:at] + escaped + text[end:]
        else:  # far beyond any OS limit
            text = text[:at] + "a" * rnd.choice([100, 200, 300, 5000]) + text[at:]
    return text


seeds = st.integers(0, 2**64)
generated = st.one_of(st.text(max_size=60), seeds.map(url_like))
mutated = seeds.map(mutate)


# --- URL fuzzing: confinement and checks ------------------------------------


class Targets:
    """Our own loopback endpoints, which confined URLs are pointed at."""

    tmp: Path
    tag: str
    listening: int
    refusing: int
    fifo_reader: int

    def __init__(self, tmp: Path) -> None:
        if sys.platform == "win32":  # pragma: no cover - for mypy; POSIX-only
            raise AssertionError("POSIX only")
        self.tmp = tmp
        self.tag = f"pt-hostile-{os.getpid()}"
        self.sockets: list[socket.socket] = []
        self.listening = self._tcp_pair(listen=True)
        self.refusing = self._tcp_pair(listen=False)
        self.local = self._unix(str(tmp / "ours.sock"))
        self.abstract = self._unix(f"\0{self.tag}") if LINUX else None
        os.mkfifo(tmp / "ours.fifo")
        # A reader, so that writers (fuzzed connects) are let in.
        self.fifo_reader = os.open(tmp / "ours.fifo", os.O_RDONLY | os.O_NONBLOCK)
        self.counts: Counter[str] = Counter()

    def _tcp_pair(self, *, listen: bool) -> int:
        """A port held on 127.0.0.1 and (if there is one) ::1 alike."""
        for _ in range(50):
            v4 = socket.socket(socket.AF_INET)
            v4.bind(("127.0.0.1", 0))
            port: int = v4.getsockname()[1]
            held = [v4]
            if has_ipv6_loopback():
                v6 = socket.socket(socket.AF_INET6)
                try:
                    v6.bind(("::1", port))
                except OSError:
                    v4.close()
                    v6.close()
                    continue
                held.append(v6)
            for sock in held:
                sock.setblocking(False)
                if listen:
                    sock.listen(64)
            self.sockets += held
            return port
        raise RuntimeError("no port free on both loopbacks")

    def _unix(self, address: str) -> socket.socket:
        if sys.platform == "win32":  # pragma: no cover - for mypy; POSIX-only
            raise AssertionError("POSIX only")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(address)
        sock.listen(64)
        sock.setblocking(False)
        self.sockets.append(sock)
        return sock

    def drain(self) -> None:
        """Accept and drop what the last example left in our backlogs."""
        for sock in self.sockets:
            while True:
                try:
                    sock.accept()[0].close()
                except OSError:
                    break
        while True:
            try:
                if not os.read(self.fifo_reader, 65536):
                    break
            except BlockingIOError:
                break

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        os.close(self.fifo_reader)

    def confine(self, url: URL, verb: str) -> URL | None:
        """*url* made harmless for *verb*, or None to only parse it."""
        if url.scheme not in CONFINED:
            return None
        pick = hash(str(url.query)) % 2 == 0
        if url.scheme in ("anon",):
            return url
        if url.scheme in ("local", "fifo"):
            if not url.path:
                return url
            if url.path.startswith("/\0"):
                name = self.tag if verb == "connect" and pick else f"{self.tag}-x"
                return url.replace(path=f"/\0{name}")
            ours = "ours.fifo" if url.scheme == "fifo" else "ours.sock"
            name = ours if verb == "connect" and pick else f"{verb}.{url.scheme}"
            return url.replace(path=str(self.tmp / name))
        host = url.host
        if host not in LOOPBACK_HOSTS:
            host = "::1" if url.scheme.endswith("6") else "127.0.0.1"
        port = url.port
        if verb != "connect":
            port = 0 if port is not None else None
        elif port:
            port = self.listening if pick else self.refusing
        return url.replace(host=host, port=port)


def check_parse(text: str, counts: Counter[str]) -> URL | None:
    """URL.parse raises only InvalidURL; what it accepts round-trips."""
    try:
        url = URL.parse(text)
    except InvalidURL:
        counts["rejected"] += 1
        return None
    counts["accepted"] += 1
    canonical = str(url)
    again = URL.parse(canonical)
    assert again == url, (text, canonical)
    assert str(again) == canonical
    return url


async def exercise(text: str, url: URL | None, targets: Targets) -> None:
    """Every verb, within a deadline: InvalidURL or OSError, or an object.

    Unparsable text goes to the verbs as it is (they must reject it before
    any I/O); a parsed URL goes confined, or not at all.
    """
    for name, verb in VERBS.items():
        target: str | URL | None = text if url is None else targets.confine(url, name)
        if target is None:
            continue
        with trio.fail_after(5):
            try:
                opened = await verb(target)
            except (InvalidURL, OSError) as exc:
                targets.counts[f"{name}: {type(exc).__name__}"] += 1
                continue
            targets.counts[f"{name}: opened"] += 1
            await opened.aclose()


def run_fuzz(strategy: st.SearchStrategy[str], tmp: Path, title: str) -> None:
    targets = Targets(tmp)
    parse_counts: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(text: str) -> None:
        note(f"text = {text!r}")
        parse_counts["examples"] += 1
        url = check_parse(text, parse_counts)
        targets.drain()
        trio.run(exercise, text, url, targets)

    started = time.perf_counter()
    # Garbage of earlier tests (a subprocess's pipes) must not close while
    # this counts its own descriptors.
    gc.collect()
    before = open_fds()
    try:
        one()
    finally:
        targets.close()
    elapsed = time.perf_counter() - started
    io = ", ".join(f"{key} {n}" for key, n in sorted(targets.counts.items()))
    print(
        f"\nFIGURE fuzz [{title}]: {parse_counts['examples']} examples, "
        f"{parse_counts['accepted']} accepted, {parse_counts['rejected']} rejected, "
        f"{parse_counts['known _url.py bug']} known _url.py bug; {io}; "
        f"{elapsed:.1f} s"
    )
    assert parse_counts["examples"] >= EXAMPLES
    assert open_fds() == before - len(targets.sockets) - 1
    leftovers = {p.name for p in tmp.iterdir()} - {"ours.sock", "ours.fifo"}
    assert not leftovers, "every socket file and FIFO a verb made is gone"


@fuzz_targets
def test_fuzz_generated_strings(tmp_path: Path) -> None:
    run_fuzz(generated, tmp_path, "generated strings")


@fuzz_targets
def test_fuzz_mutated_valid_urls(tmp_path: Path) -> None:
    run_fuzz(mutated, tmp_path, "mutated valid URLs")


@pytest.mark.parametrize(
    "text",
    [
        "tcp4://127.0.0.1:1#%80",
        "anon://#\udc80",
        "anon://?x=%ff",
        pytest.param("local:///%80", marks=files),
    ],
)
def test_undecodable_bytes_round_trip(text: str) -> None:
    """Percent-escapes that are not UTF-8 survive as surrogate escapes."""
    url = URL.parse(text)
    assert URL.parse(str(url)) == url


@pytest.mark.parametrize("text", ["anon://?x=\ud800", "tls+tcp://\ud800:1"])
def test_lone_surrogates_are_invalid(text: str) -> None:
    with pytest.raises(InvalidURL, match="cannot be encoded"):
        URL.parse(text)


@files
def test_path_options_are_strict() -> None:
    """Bad mode/nofollow values are InvalidURL at parse time (no int() leniency)."""
    for bad in ["6_0_0", "-0", "+600", " 600", "0o600", "01000", "8", ""]:
        for scheme in ("local", "fifo"):
            with pytest.raises(InvalidURL, match="mode="):
                URL.parse(f"{scheme}:///tmp/x?mode={bad}")
    for bad in ["2", "maybe"]:
        with pytest.raises(InvalidURL, match="nofollow="):
            URL.parse(f"local:///tmp/x?nofollow={bad}")
    assert URL.parse("fifo:///tmp/x?mode=600&nofollow").query == {
        "mode": "600",
        "nofollow": "1",
    }
    for text in ["local:///\ud800", "fifo:///a\udfff"]:
        with pytest.raises(InvalidURL, match=r"cannot (be )?encode"):
            URL.parse(text)


# --- files in the way ----------------------------------------------------------


def _snapshot(path: Path) -> object:
    """Everything about *path* and what it points to that must not change."""
    info = os.lstat(path)
    seen: list[object] = [info.st_ino, info.st_mode, info.st_size, info.st_mtime_ns]
    if stat.S_ISLNK(info.st_mode):
        seen.append(os.readlink(path))
    if path.is_dir():
        seen.append(sorted(os.listdir(path)))
    elif path.is_file():
        seen.append(path.read_bytes())
    return seen


def _put(kind: str, path: Path, tmp: Path) -> None:
    """Make *path* a *kind* of thing (its targets live in *tmp*/targets)."""
    if sys.platform == "win32":  # pragma: no cover - for mypy; POSIX-only
        raise AssertionError("POSIX only")
    targets = tmp / "targets"
    targets.mkdir(exist_ok=True)
    precious = targets / "precious"
    precious.write_bytes(b"precious data")
    (targets / "dir").mkdir(exist_ok=True)
    (targets / "dir" / "inside").write_bytes(b"inside")
    if kind == "file":
        path.write_bytes(b"a regular file")
    elif kind == "directory":
        path.mkdir()
        (path / "content").write_bytes(b"content")
    elif kind == "symlink to file":
        path.symlink_to(precious)
    elif kind == "symlink to directory":
        path.symlink_to(targets / "dir")
    elif kind == "dangling symlink":
        path.symlink_to(targets / "nothing")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        raise AssertionError(kind)


IN_THE_WAY = [
    "file",
    "directory",
    "symlink to file",
    "symlink to directory",
    "dangling symlink",
]


@files
@pytest.mark.trio
@pytest.mark.parametrize("kind", [*IN_THE_WAY, "fifo"])
async def test_local_never_replaces_what_is_there(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "in-the-way"
    _put(kind, path, tmp_path)
    before = _snapshot(path), _snapshot(tmp_path / "targets")
    for url in (f"local://{path}", f"local://{path}?behaviour=datagram&mode=0600"):
        opener = pt.open_datagram if "datagram" in url else pt.listen
        with pytest.raises(OSError, match="refusing to replace") as info:
            await opener(url)
        assert info.value.errno == errno.EEXIST
        assert str(path) in str(info.value)
        assert (_snapshot(path), _snapshot(tmp_path / "targets")) == before


@files
@pytest.mark.trio
@pytest.mark.parametrize("kind", IN_THE_WAY)
async def test_fifo_never_touches_what_is_there(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "in-the-way"
    _put(kind, path, tmp_path)
    before = _snapshot(path), _snapshot(tmp_path / "targets")
    for verb in (pt.listen, pt.connect):
        with pytest.raises(OSError):
            await verb(f"fifo://{path}")
        assert (_snapshot(path), _snapshot(tmp_path / "targets")) == before


@files
@pytest.mark.trio
@pytest.mark.parametrize("scheme", ["local", "fifo"])
@pytest.mark.parametrize("replacement", ["file", "symlink to file"])
async def test_close_never_removes_a_replacement(
    scheme: str, replacement: str, tmp_path: Path
) -> None:
    """Someone replaces the listener's file while it listens: closing the
    listener leaves the replacement (and what a symlink points to) alone."""
    path = tmp_path / "endpoint"
    listener = await pt.listen(f"{scheme}://{path}")
    os.unlink(path)
    _put(replacement, path, tmp_path)
    before = _snapshot(path), _snapshot(tmp_path / "targets")
    if scheme == "fifo" and replacement == "file":
        # The next session reopens the path: a regular file is refused, unread.
        async with await listener.accept():
            pass
        with pytest.raises(OSError, match="not a FIFO"):
            await listener.accept()
    await listener.aclose()
    assert (_snapshot(path), _snapshot(tmp_path / "targets")) == before


@files
@pytest.mark.trio
async def test_fifo_connect_checks_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The FIFO is swapped for a regular file between the check and the open:
    the open descriptor is checked too, so not a byte is written."""
    if sys.platform == "win32":  # pragma: no cover - for mypy; POSIX-only
        raise AssertionError("POSIX only")
    path = tmp_path / "swapped"
    os.mkfifo(path)
    real_open = os.open

    def swapping_open(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(name) == path:
            os.unlink(path)
            path.write_bytes(b"precious")
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", swapping_open)
    with pytest.raises(FileExistsError, match="not a FIFO"):
        await pt.connect(f"fifo://{path}")
    monkeypatch.undo()
    assert path.read_bytes() == b"precious"


# --- ?nofollow -------------------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    """``tmp/real`` (a directory) and ``tmp/link`` -> ``tmp/real``."""
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    return real, link


def _is_nofollow_refusal(exc: OSError, link: Path) -> bool:
    return exc.errno == errno.ELOOP and f"{link} is a symbolic link" in str(exc)


@files
@pytest.mark.trio
async def test_nofollow_local(linked: tuple[Path, Path], tmp_path: Path) -> None:
    real, link = linked
    # Without ?nofollow the symlinked directory is followed, as the OS does.
    async with await pt.listen(f"local://{link}/plain.sock"):
        assert (real / "plain.sock").exists()
    for through in (f"{link}/s.sock", f"{link}/sub/s.sock"):
        attempts: list[tuple[Verb, str]] = [
            (pt.listen, f"local://{through}?nofollow"),
            (pt.open_datagram, f"local://{through}?behaviour=datagram&nofollow"),
        ]
        for verb, url in attempts:
            with pytest.raises(OSError) as info:
                await verb(url)
            assert _is_nofollow_refusal(info.value, link), info.value
            assert url.split("?")[0] in str(info.value)  # names the URL too
    assert sorted(os.listdir(real)) == ["sub"]  # nothing was created
    assert os.listdir(real / "sub") == []
    # connect: through a symlinked directory, or to a symlink itself.
    async with await pt.listen(f"local://{real}/s.sock?nofollow") as listener:
        (tmp_path / "final").symlink_to(real / "s.sock")
        for path, symlink in [(f"{link}/s.sock", link), (tmp_path / "final", None)]:
            with pytest.raises(OSError) as info:
                await pt.connect(f"local://{path}?nofollow")
            assert _is_nofollow_refusal(info.value, symlink or tmp_path / "final")
            async with await pt.connect(f"local://{path}"):  # followed when asked
                async with await listener.accept():
                    pass
        async with await pt.connect(f"local://{real}/s.sock?nofollow"):
            async with await listener.accept():
                pass
    async with await pt.open_datagram(
        f"local://{real}/d.sock?behaviour=datagram"
    ) as peer:
        with pytest.raises(OSError) as info:
            await pt.connect_datagram(
                f"local://{link}/d.sock?behaviour=datagram&nofollow"
            )
        assert _is_nofollow_refusal(info.value, link)
        assert peer.url.path == f"{real}/d.sock"


@files
@pytest.mark.trio
async def test_nofollow_fifo(linked: tuple[Path, Path], tmp_path: Path) -> None:
    real, link = linked
    with pytest.raises(OSError) as info:
        await pt.listen(f"fifo://{link}/f?nofollow")
    assert _is_nofollow_refusal(info.value, link)
    assert sorted(os.listdir(real)) == ["sub"]
    async with await pt.listen(f"fifo://{real}/f?nofollow") as listener:
        (tmp_path / "final").symlink_to(real / "f")
        for path, symlink in [(f"{link}/f", link), (tmp_path / "final", None)]:
            with pytest.raises(OSError) as info:
                await pt.connect(f"fifo://{path}?nofollow")
            assert _is_nofollow_refusal(info.value, symlink or tmp_path / "final")
        with pytest.raises(OSError) as info:  # an existing FIFO behind a symlink
            await pt.listen(f"fifo://{tmp_path}/final?nofollow")
        assert info.value.errno == errno.ELOOP
        async with await pt.connect(f"fifo://{real}/f?nofollow") as writer:
            await writer.send_all(b"direct")
        async with await listener.accept() as reader:
            assert await reader.receive_some() == b"direct"
    assert (tmp_path / "final").is_symlink()  # a symlink is never ours to remove


# --- ?mode= without a window ---------------------------------------------------


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """``umask(mask)`` sets the process umask; the old one comes back after."""
    old = os.umask(0o022)
    os.umask(old)
    try:
        yield os.umask
    finally:
        os.umask(old)


@files
@pytest.mark.trio
@pytest.mark.parametrize(
    ("mode", "mask"), [(0o600, 0o000), (0o660, 0o022), (0o640, 0o077)]
)
async def test_local_mode_is_set_at_bind(
    mode: int,
    mask: int,
    tmp_path: Path,
    umask: Callable[[int], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The socket file has the asked-for mode the moment bind() creates it,
    under any umask: never a moment more open (nor, in the end, less)."""
    at_bind: list[int] = []

    class Spy(socket.socket):
        def bind(self, address: Any) -> None:
            super().bind(address)
            if isinstance(address, str) and address.startswith("/"):
                at_bind.append(stat.S_IMODE(os.lstat(address).st_mode))

    umask(mask)
    monkeypatch.setattr(socket, "socket", Spy)
    openers: list[tuple[str, Verb]] = [
        (f"local://{tmp_path}/m.sock?mode={mode:o}", pt.listen),
        (
            f"local://{tmp_path}/d.sock?behaviour=datagram&mode={mode:o}",
            pt.open_datagram,
        ),
    ]
    for url, opener in openers:
        async with await opener(url) as opened:
            path = opened.url.path
            assert stat.S_IMODE(os.stat(path).st_mode) == mode
    monkeypatch.undo()
    assert at_bind == [mode, mode]


@files
@pytest.mark.trio
@pytest.mark.parametrize(("mode", "mask"), [(0o600, 0o000), (0o640, 0o077)])
async def test_fifo_mode_is_never_wider(
    mode: int,
    mask: int,
    tmp_path: Path,
    umask: Callable[[int], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """mkfifo() under the umask makes the FIFO at most *mode*; fchmod() on the
    open descriptor then makes it exactly *mode*."""
    if sys.platform == "win32":  # pragma: no cover - for mypy; POSIX-only
        raise AssertionError("POSIX only")
    at_mkfifo: list[int] = []
    real_mkfifo = os.mkfifo

    def spy(path: Any, mode: int = 0o666, *args: Any, **kwargs: Any) -> None:
        real_mkfifo(path, mode, *args, **kwargs)
        at_mkfifo.append(stat.S_IMODE(os.lstat(path).st_mode))

    umask(mask)
    monkeypatch.setattr(os, "mkfifo", spy)
    async with await pt.listen(f"fifo://{tmp_path}/f?mode={mode:o}"):
        assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == mode
    monkeypatch.undo()
    assert len(at_mkfifo) == 1 and at_mkfifo[0] & ~mode == 0


# --- paths longer than the OS takes ------------------------------------------------


@files
@pytest.mark.trio
async def test_local_path_limits() -> None:
    base = Path(tempfile_dir())
    limit = 107 if LINUX else 103
    fits = base / ("p" * (limit - len(str(base)) - 1))
    assert len(str(fits).encode()) == limit
    async with await pt.listen(f"local://{fits}") as listener:
        async with await pt.connect(listener.url):
            pass
    with pytest.raises(
        InvalidURL, match=f"{limit + 1} bytes; this OS allows at most {limit}"
    ):
        URL.parse(f"local://{fits}x")
    if LINUX:  # an abstract name may use all 108 bytes of sun_path
        name = f"pt-{os.getpid()}-".ljust(107, "a")
        async with await pt.listen(f"local:///%00{name}") as listener:
            async with await pt.connect(listener.url):
                pass
        with pytest.raises(InvalidURL, match="109 bytes; this OS allows at most 108"):
            URL.parse(f"local:///%00{name}b")


def tempfile_dir() -> str:
    """A short directory of our own (pytest's tmp_path may be long)."""
    import tempfile

    return tempfile.mkdtemp(prefix="pt-", dir="/tmp")


@files
def test_fifo_path_limits() -> None:
    path_max = 4096 if LINUX else 1024
    long_path = "/tmp/" + "/".join(["d" * 200] * (path_max // 200 + 1))
    with pytest.raises(InvalidURL, match=f"at most {path_max - 1} \\(PATH_MAX\\)"):
        URL.parse(f"fifo://{long_path}")
    with pytest.raises(InvalidURL, match="256 bytes; this OS allows at most 255"):
        URL.parse(f"fifo:///tmp/{'n' * 256}")
    URL.parse(f"fifo:///tmp/{'n' * 255}")


# --- peer credentials ------------------------------------------------------------


def _example() -> Any:
    import importlib.util

    path = Path(__file__).parent.parent / "examples" / "peer_credentials.py"
    spec = importlib.util.spec_from_file_location("peer_credentials_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.posix_only(reason="peer credentials are a local:// (AF_UNIX) feature")
def test_peer_credentials_decision() -> None:
    example = _example()
    assert example.allowed((123, 1000, 1000), {1000})
    assert not example.allowed((123, 1001, 1000), {1000})
    assert not example.allowed((123, 0, 0), {1000})


NOBODY = 65534


@pytest.mark.trio
@pytest.mark.skipif(not LINUX, reason="uses an abstract name (no file permissions)")
@pytest.mark.skipif(
    getattr(os, "geteuid", lambda: -1)() != 0, reason="needs root to become nobody"
)
async def test_peer_credentials_refuse_another_uid() -> None:
    """The example server, serving only our uid: a child that became nobody
    is refused, we are served."""
    if sys.platform == "win32":  # pragma: no cover - for mypy; POSIX-only
        raise AssertionError("POSIX only")
    example = _example()
    name = f"pt-cred-{os.getpid()}"
    async with trio.open_nursery() as nursery:
        await nursery.start(
            pt.serve, f"local:///%00{name}", example.make_handler({os.getuid()})
        )
        async with await pt.connect(f"local:///%00{name}") as ours:
            assert await ours.receive_some() == b"hello, uid %d\n" % os.getuid()
            await ours.send_all(b"echo?")
            assert await ours.receive_some() == b"echo?"
        answer = await trio.to_thread.run_sync(_connect_as_nobody, "\0" + name)
        assert answer == b"refused: uid %d is not allowed here\n" % NOBODY
        nursery.cancel_scope.cancel()


def _connect_as_nobody(address: str) -> bytes:
    """Fork; the child drops to nobody, connects, and reports what it read."""
    if sys.platform == "win32":  # pragma: no cover - for mypy; POSIX-only
        raise AssertionError("POSIX only")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plain syscalls only, then _exit, whatever happens
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(10)
                sock.connect(address)
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
            os.write(write_end, answer)
            status = 0
        except BaseException as exc:
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    assert os.waitstatus_to_exitcode(status) == 0, answer
    return answer


# --- odd datagrams ---------------------------------------------------------------


DATAGRAM_KINDS = ["udp4", pytest.param("local", marks=files)]


def _raw_sender(kind: str, tmp: Path) -> socket.socket:
    if kind == "udp4":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
    elif sys.platform == "win32":  # pragma: no cover - for mypy; POSIX-only
        raise AssertionError("local:// is POSIX only")
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(tmp / "raw.sock"))
    return sock


def _address(url: URL) -> Any:
    return (url.host, url.port) if url.scheme.startswith("udp") else url.path


@pytest.mark.parametrize("kind", DATAGRAM_KINDS)
def test_odd_datagrams_are_data(kind: str, tmp_path: Path) -> None:
    """Whatever bytes arrive (none, NULs, invalid UTF-8, random binary), they
    are delivered exactly, with the sender, as data."""

    @settings(max_examples=200, deadline=None, database=None)
    @given(st.lists(st.binary(max_size=2048), min_size=1, max_size=8))
    def one(payloads: list[bytes]) -> None:
        trio.run(exchange, payloads)

    url = (
        "udp4://127.0.0.1:0"
        if kind == "udp4"
        else f"local://{tmp_path}/r.sock?behaviour=datagram"
    )

    async def exchange(payloads: list[bytes]) -> None:
        with _raw_sender(kind, tmp_path) as raw:
            async with await pt.open_datagram(url) as receiver:
                if kind == "udp4":
                    sender = URL.parse(f"udp4://127.0.0.1:{raw.getsockname()[1]}")
                else:
                    sender = URL.parse(
                        f"local://{tmp_path}/raw.sock?behaviour=datagram"
                    )
                for payload in [b"", b"\0", b"\xff\xfe\x80", *payloads]:
                    raw.sendto(payload, _address(receiver.url))
                    with trio.fail_after(5):
                        assert await receiver.receive_from() == (payload, sender)
        if kind == "local":
            os.unlink(tmp_path / "raw.sock")

    one()


@files
@pytest.mark.trio
async def test_unnamed_local_sender_is_data_not_an_error(tmp_path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - for mypy; POSIX-only
        raise AssertionError("POSIX only")
    async with await pt.open_datagram(
        f"local://{tmp_path}/r?behaviour=datagram"
    ) as sock:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"from nowhere", str(tmp_path / "r"))  # an unbound sender
        data, sender = await sock.receive_from()
        assert data == b"from nowhere"
        assert sender.path == "" or sender.path.startswith("/\0")  # Linux autobinds
        if not sender.path:
            with pytest.raises(InvalidURL, match="no address"):
                await sock.send_to(b"reply", sender)


@pytest.mark.trio
@pytest.mark.parametrize("kind", DATAGRAM_KINDS)
async def test_oversize_datagrams_are_errors(kind: str, tmp_path: Path) -> None:
    """Biggest possible: delivered whole. Bigger than max_size: an error
    naming the size, and the next datagram still arrives. Too big to send:
    an error naming the size."""
    biggest = 65507 if kind == "udp4" else 150_000
    url = (
        "udp4://127.0.0.1:0"
        if kind == "udp4"
        else f"local://{tmp_path}/o?behaviour=datagram"
    )
    with _raw_sender(kind, tmp_path) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        async with await pt.open_datagram(url) as receiver:
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            raw.sendto(b"B" * biggest, _address(receiver.url))
            data, _ = await receiver.receive_from(max_size=biggest)
            assert data == b"B" * biggest
            raw.sendto(
                b"C" * 70_000 if kind == "local" else b"C" * 1000,
                _address(receiver.url),
            )
            raw.sendto(b"next", _address(receiver.url))
            with pytest.raises(OSError, match="max_size=") as info:
                await receiver.receive_from(max_size=100 if kind == "udp4" else 65536)
            assert info.value.errno == errno.EMSGSIZE
            assert str(receiver.url) in str(info.value)
            assert (await receiver.receive_from())[0] == b"next"
            if kind == "udp4":
                with pytest.raises(OSError, match="65508 bytes") as info:
                    await receiver.send_to(b"D" * 65508, receiver.url)
                assert info.value.errno == errno.EMSGSIZE

"""local:// ``?takeover=1``: a restarting server never leaves a moment where
connecting fails.

The main test runs a client process connecting in a tight loop while eleven
servers take the path over one after the other; every connect must succeed
and reach a server (each answers with its number). The others check what
takeover refuses and that the old server's close leaves the new file alone.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

import packeteer_trio as pt

from .conftest import posix_only

AF_UNIX: int = getattr(socket, "AF_UNIX", 0)
TAKEOVERS = 10

# Connects until STOP exists; each connection reads the server's number up to
# EOF. Prints the figures as JSON: connects made, connects that failed (with
# the first few errors), and how many connections each server answered.
_CLIENT = textwrap.dedent(
    """
    import collections, json, os, socket, sys
    import time
    path, stop, ready = sys.argv[1], sys.argv[2], sys.argv[3]
    connects, failed, errors = 0, 0, []
    unanswered = 0
    per_server = collections.Counter()
    deadline = time.monotonic() + 60  # bounded, should the test die first
    while not os.path.exists(stop) and time.monotonic() < deadline:
        sock = socket.socket(socket.AF_UNIX)
        connects += 1
        try:
            sock.connect(path)
        except OSError as exc:
            failed += 1
            errors.append(repr(exc))
            sock.close()
            continue
        data = b""
        try:
            while chunk := sock.recv(64):
                data += chunk
        except OSError as exc:
            errors.append(repr(exc))
        sock.close()
        if data:
            per_server[data.decode()] += 1
        else:
            unanswered += 1
        if connects == 1:
            open(ready, "w").close()
    print(json.dumps({"connects": connects, "failed": failed,
                      "unanswered": unanswered, "errors": errors[:5],
                      "per_server": dict(sorted(per_server.items(),
                                                key=lambda kv: int(kv[0])))}))
    """
)


async def _answer(number: int, listener: pt.Listener) -> None:
    async def handler(stream: pt.Stream) -> None:
        async with stream:
            await stream.send_all(str(number).encode())

    await trio.serve_listeners(handler, [listener])


async def _wait_for(path: Path) -> None:
    with trio.fail_after(30):
        while not path.exists():
            await trio.sleep(0.01)


async def _take_over_ten_times(
    path: Path, url: str, ready: Path, stop: Path, client: subprocess.Popen[str]
) -> str:
    """Serve at *path*, take it over TAKEOVERS times with *url*, stop the
    client and return what it printed."""

    async def run(number: int, listener: pt.Listener, scope: trio.CancelScope) -> None:
        with scope:
            await _answer(number, listener)

    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()
        nursery.start_soon(run, 0, await pt.listen(f"local://{path}"), scope)
        await _wait_for(ready)
        for number in range(1, TAKEOVERS + 1):
            old_scope = scope
            await trio.sleep(0.05)
            new = await pt.listen(url)
            scope = trio.CancelScope()
            nursery.start_soon(run, number, new, scope)
            # The old server answers what is already in its backlog, then stops
            # (serve_listeners closes its listener; the file is no longer its).
            await trio.sleep(0.05)
            old_scope.cancel()
        await trio.sleep(0.05)
        stop.touch()
        out, _ = await trio.to_thread.run_sync(client.communicate)
        scope.cancel()
    return out


@posix_only
@pytest.mark.trio
async def test_ten_takeovers_lose_no_connect(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, str(path), str(stop), str(ready)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        out = await _take_over_ten_times(
            path, f"local://{path}?takeover=1", ready, stop, client
        )
    finally:
        client.kill()
        client.wait()
    figures = json.loads(out)
    print("takeover figures:", json.dumps(figures))
    assert figures["failed"] == 0, figures
    assert figures["unanswered"] == 0, figures
    assert sum(figures["per_server"].values()) == figures["connects"]
    # Every server was reached: the client really was connecting throughout.
    assert set(figures["per_server"]) == {str(n) for n in range(TAKEOVERS + 1)}
    assert not path.exists()  # the last server's close removed its own file
    assert sorted(os.listdir(tmp_path)) == ["ready", "stop"]  # no temporary left


@posix_only
@pytest.mark.trio
async def test_old_servers_close_leaves_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    old = await pt.listen(f"local://{path}?mode=0600")
    new = await pt.listen(f"local://{path}?takeover=1&mode=0640")
    taken = os.lstat(path)
    assert stat.S_ISSOCK(taken.st_mode) and stat.S_IMODE(taken.st_mode) == 0o640
    await old.aclose()
    assert os.lstat(path).st_ino == taken.st_ino
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_answer, 7, new)
        async with await pt.connect(f"local://{path}") as stream:
            assert await stream.receive_some() == b"7"
        nursery.cancel_scope.cancel()
    assert not path.exists()


@posix_only
@pytest.mark.trio
async def test_takeover_of_a_missing_path_just_binds(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sock"
    async with await pt.listen(f"local://{path}?takeover=1") as listener:
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert listener.url == pt.URL.parse(f"local://{path}")
    assert os.listdir(tmp_path) == []


@posix_only
@pytest.mark.trio
@pytest.mark.parametrize("kind", ["file", "directory", "fifo", "symlink"])
async def test_takeover_refuses_what_is_not_a_socket(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x"
    if kind == "file":
        path.write_text("keep me")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        if sys.platform != "win32":  # (posix_only: for mypy --platform win32)
            os.mkfifo(path)
    else:
        live = socket.socket(AF_UNIX)
        live.bind(str(tmp_path / "real.sock"))
        path.symlink_to(tmp_path / "real.sock")
    before = os.lstat(path)
    with pytest.raises(FileExistsError, match="not a socket") as info:
        await pt.listen(f"local://{path}?takeover=1")
    assert str(path) in str(info.value)
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    # No temporary socket file left behind.
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tk")]
    if kind == "symlink":
        live.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("local:///tmp/x.sock?takeover=maybe", "not a boolean"),
        ("local:///%00abstract?takeover=1", "socket paths only"),
        ("local:///tmp/x.sock?takeover=1&behaviour=datagram", "stream listeners"),
        ("local:///" + "d" * 100 + "/x?takeover=1", "shorter directory"),
    ],
)
def test_takeover_option_errors(url: str, message: str) -> None:
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("local:// is AF_UNIX")
    if "%00" in url and not sys.platform.startswith("linux"):
        pytest.skip("abstract names are Linux-only")
    with pytest.raises(pt.InvalidURL, match=message):
        pt.URL.parse(url)

"""local:// socket files: what a listener may remove, and whom it may contact.

- A process swapping regular files in and out of the path while we listen and
  close there in a loop never loses a file to us (the stale check and the
  removal on close are races POSIX gives no atomic answer to).
- Listening where a live server is bound costs that server nothing: it never
  sees a connection, and we fail with EADDRINUSE.
- packeteer (C++) pads abstract names with NULs to all of sun_path;
  ``?padded=1`` and the padded spelling reach and serve such sockets.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

import packeteer_trio as pt

from .conftest import linux_only, posix_only

# For mypy --platform win32; every test using it is skipped there.
AF_UNIX: int = getattr(socket, "AF_UNIX", 0)

# Never deletes anything: it places things at PATH with link() (which never
# replaces) or swaps them in with renameat2(RENAME_EXCHANGE) (atomic, and what
# was there moves out), and takes them away by rename() into ARCHIVE. So every
# regular file it makes must still exist somewhere under its directory at the
# end, unless the listener under test deleted it.
_SWAPPER = textwrap.dedent(
    """
    import ctypes, os, socket, sys, time
    path, work, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    archive = os.path.join(work, "archive")
    os.mkdir(archive)
    tmp_sock = os.path.join(work, "stale.sock")
    tmp_regular = os.path.join(work, "next-regular")
    deadline = time.monotonic() + seconds
    made = 0
    i = 0

    def clear(source, tag):
        try:
            os.rename(source, os.path.join(archive, f"{i}.{tag}"))
        except FileNotFoundError:
            pass

    def place(source):
        try:
            os.link(source, path)
        except FileExistsError:
            clear(source, "unplaced")
            return
        os.unlink(source)

    while time.monotonic() < deadline:
        i += 1
        clear(path, "old")
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(tmp_sock)
        stale.close()
        place(tmp_sock)
        # Let the listener find the stale socket, then swap a file in.
        for _ in range(i % 7 * 20):
            pass
        with open(tmp_regular, "w") as f:
            f.write(f"swapped-{i}")
        made += 1
        swapped = libc.renameat2(
            AT_FDCWD, tmp_regular.encode(), AT_FDCWD, path.encode(), RENAME_EXCHANGE
        )
        if swapped == 0:
            clear(tmp_regular, "swapped-out")  # what was at path
        else:
            place(tmp_regular)  # nothing was at path
    print(made)
    """
)


def _regular_files(root: Path) -> set[str]:
    found = set()
    for directory, _, files in os.walk(root):
        for name in files:
            full = Path(directory, name)
            if full.is_file() and not full.is_symlink():
                text = full.read_text(encoding="utf-8")
                if text.startswith("swapped-"):
                    found.add(text)
    return found


@linux_only  # the swapper uses renameat2(RENAME_EXCHANGE)
@pytest.mark.slow
def test_listen_and_close_never_delete_a_swapped_in_file(tmp_path: Path) -> None:
    work = tmp_path / "race"
    work.mkdir()
    path = work / "s.sock"
    seconds = 4.0
    swapper = subprocess.Popen(
        [sys.executable, "-c", _SWAPPER, str(path), str(work), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    replaced = 0

    async def listen_in_a_loop() -> None:
        nonlocal replaced
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                listener = await pt.listen(f"local://{path}")
            except OSError:
                continue
            replaced += 1
            await listener.aclose()

    try:
        trio.run(listen_in_a_loop)
    finally:
        out, _ = swapper.communicate(timeout=30)
    assert swapper.returncode == 0
    made = int(out)
    found = _regular_files(work)
    lost = {f"swapped-{i}" for i in range(1, made + 1)} - found
    assert made > 1000, "the swapper barely ran: the race was not exercised"
    assert replaced > 100, "listen never won: the race was not exercised"
    assert not lost, f"{len(lost)} of {made} swapped-in files were deleted"


def _live_server(path: Path) -> socket.socket:
    server = socket.socket(AF_UNIX)
    server.bind(str(path))
    server.listen()
    server.setblocking(False)
    return server


def _accepted_nothing(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@linux_only
@pytest.mark.trio
async def test_listen_on_a_live_path_contacts_nobody(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    with _live_server(path) as server:
        for behaviour in ("", "?behaviour=datagram"):
            with pytest.raises(OSError) as caught:
                if behaviour:
                    await pt.open_datagram(f"local://{path}{behaviour}")
                else:
                    await pt.listen(f"local://{path}")
            assert caught.value.errno == errno.EADDRINUSE
            assert str(path) in str(caught.value)
            assert _accepted_nothing(server), "the live server got a probe"
        assert path.exists()


@linux_only
@pytest.mark.trio
async def test_listen_on_a_live_datagram_path_contacts_nobody(tmp_path: Path) -> None:
    path = tmp_path / "live-dgram.sock"
    with socket.socket(AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.setblocking(False)
        with pytest.raises(OSError) as caught:
            await pt.open_datagram(f"local://{path}?behaviour=datagram")
        assert caught.value.errno == errno.EADDRINUSE
        with pytest.raises(BlockingIOError):
            server.recv(1)  # no probe datagram, nothing at all arrived
        assert path.exists()


@posix_only
@pytest.mark.trio
async def test_stale_socket_is_still_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(AF_UNIX)
    stale.bind(str(path))
    stale.close()
    async with await pt.listen(f"local://{path}") as listener:
        async with await pt.connect(listener.url) as client:
            await client.send_all(b"ok")
            async with await listener.accept() as server:
                assert await server.receive_some() == b"ok"
    assert not path.exists()


# -- abstract names padded like packeteer's -------------------------------------

SUN_PATH = 108


def _name() -> str:
    return f"pt-padded-{os.getpid()}-{time.monotonic_ns()}"


def _padded(name: str) -> bytes:
    raw = b"\0" + name.encode()
    return raw + b"\0" * (SUN_PATH - len(raw))


def _spelled_padded(name: str) -> str:
    return "local:///%00" + name + "%00" * (SUN_PATH - 1 - len(name))


@linux_only
@pytest.mark.parametrize("spelling", ["option", "padded"])
@pytest.mark.trio
async def test_connect_to_a_packeteer_abstract_socket(spelling: str) -> None:
    name = _name()
    url = (
        f"local:///%00{name}?padded=1"
        if spelling == "option"
        else _spelled_padded(name)
    )
    with socket.socket(AF_UNIX) as server:
        server.bind(_padded(name))  # as packeteer binds it
        server.listen()
        # The exact-length default is a different address: refused.
        with pytest.raises(ConnectionRefusedError):
            await pt.connect(f"local:///%00{name}")
        async with await pt.connect(url) as client:
            conn, _ = server.accept()
            with conn:
                await client.send_all(b"to packeteer")
                assert conn.recv(100) == b"to packeteer"


@linux_only
@pytest.mark.parametrize("spelling", ["option", "padded"])
@pytest.mark.trio
async def test_serve_a_packeteer_abstract_socket(spelling: str) -> None:
    name = _name()
    url = (
        f"local:///%00{name}?padded=1"
        if spelling == "option"
        else _spelled_padded(name)
    )
    async with await pt.listen(url) as listener:
        assert pt.URL.parse(str(listener.url)) == listener.url
        with socket.socket(AF_UNIX) as client:
            client.connect(_padded(name))  # as packeteer connects
            client.sendall(b"from packeteer")
            async with await listener.accept() as server:
                assert await server.receive_some() == b"from packeteer"
            # ... and our URL for it reaches the same socket again.
            async with await pt.connect(listener.url):
                pass


@linux_only
@pytest.mark.trio
async def test_padded_datagrams() -> None:
    name = _name()
    with socket.socket(AF_UNIX, socket.SOCK_DGRAM) as peer:
        peer.bind(_padded(name))
        async with await pt.connect_datagram(
            f"local:///%00{name}?behaviour=datagram&padded=1"
        ) as channel:
            await channel.send(b"dgram")
            assert peer.recv(100) == b"dgram"


@pytest.mark.parametrize(
    "url",
    [
        "local:///tmp/x.sock?padded=1",  # a path has nothing to pad
        "local:///%00x?padded=maybe",
        "local:///tmp/a%00b",  # NUL inside a path
    ],
)
def test_padded_option_errors(url: str) -> None:
    with pytest.raises(pt.InvalidURL):
        pt.URL.parse(url)

"""``packeteer cat URL < file``: a regular stdin goes out with ``send_file``,
byte-exact, to nc and socat on the other end (issue 20)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

import pytest

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("nc and socat, local://: POSIX only", allow_module_level=True)

from .test_cli import CLI, TIMEOUT, closed_port, env

SIZE = 8 * 1024 * 1024 + 4321
SKIP = 1000  # stdin starts here: cat sends from where stdin stands


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def source(tmp_path: Path, data: bytes) -> Iterator[BinaryIO]:
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    with path.open("rb") as file:
        file.seek(SKIP)
        yield file


@contextmanager
def receiver(tool: str, kind: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nc or socat listening, writing what it receives to a file: (our URL
    for it, that file). Stopped afterwards."""
    out = tmp_path / "out.bin"
    if kind == "tcp":
        port = closed_port()
        url = f"tcp://127.0.0.1:{port}"
        nc = ["nc", "-l", "127.0.0.1", str(port)]
        socat = [f"TCP4-LISTEN:{port},bind=127.0.0.1"]
    else:
        path = tmp_path / "peer.sock"
        url = f"local://{path}"
        nc = ["nc", "-lU", str(path)]
        socat = [f"UNIX-LISTEN:{path}"]
    argv = nc if tool == "nc" else ["socat", "-u", *socat, f"CREATE:{out}"]
    with out.open("wb") as sink:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink)
    try:
        yield url, out
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def cat(*args: str, stdin: BinaryIO) -> subprocess.CompletedProcess[bytes]:
    """cat, again while the tool is not listening yet (bounded)."""
    for _ in range(200):
        result = subprocess.run(
            [*CLI, "cat", *args],
            stdin=stdin,
            capture_output=True,
            timeout=TIMEOUT,
            env=env(),
        )
        if b"refused" not in result.stderr and b"No such file" not in result.stderr:
            return result
        time.sleep(0.05)
    raise AssertionError("the peer never listened")


@pytest.mark.parametrize("tool", ["nc", "socat"])
@pytest.mark.parametrize("kind", ["tcp", "local"])
@pytest.mark.parametrize("wait", [False, True], ids=["whole", "slices"])
def test_cat_from_a_file_is_byte_exact(
    tool: str, kind: str, wait: bool, source: BinaryIO, data: bytes, tmp_path: Path
) -> None:
    """From where stdin stands to its end; ``-w`` sends it in slices (so that
    data still moving keeps the idle timeout away). stdin's offset, which
    the caller shares, ends at the end of the file, as reading would leave it."""
    with receiver(tool, kind, tmp_path) as (url, out):
        flags = ["-v", *(["-w", "20"] if wait else [])]
        result = cat(*flags, url, stdin=source)
        assert result.returncode == 0, result.stderr
        assert f"{SIZE - SKIP} bytes sent".encode() in result.stderr
    assert out.read_bytes() == data[SKIP:]
    assert os.lseek(source.fileno(), 0, os.SEEK_CUR) == SIZE


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("strace") is None,
    reason="counts the sendfile syscalls with strace (Linux)",
)
def test_cat_uses_sendfile_for_a_file_and_not_for_a_pipe(
    source: BinaryIO, data: bytes, tmp_path: Path
) -> None:
    log = tmp_path / "strace.log"
    traced = ["strace", "-f", "-qq", "-e", "trace=sendfile", "-o", str(log)]

    def run(stdin: IO[bytes]) -> list[str]:
        with receiver("nc", "tcp", tmp_path) as (url, out):
            for _ in range(200):
                result = subprocess.run(
                    [*traced, *CLI, "cat", url],
                    stdin=stdin,
                    capture_output=True,
                    timeout=TIMEOUT,
                    env=env(),
                )
                if b"refused" not in result.stderr:
                    break
                time.sleep(0.05)
            assert result.returncode == 0, result.stderr
        assert out.read_bytes() == data[SKIP:]
        return [line for line in log.read_text().splitlines() if "sendfile(" in line]

    calls = run(source)
    assert calls and all("sendfile(" in call for call in calls)
    assert any(", 0, [" in call for call in calls)  # from stdin (fd 0)
    # The same bytes through a pipe: the copy loop, no sendfile.
    feeder = subprocess.Popen(
        ["tail", "-c", f"+{SKIP + 1}", source.name], stdout=subprocess.PIPE
    )
    assert feeder.stdout is not None
    try:
        assert run(feeder.stdout) == []
    finally:
        feeder.stdout.close()
        feeder.wait(TIMEOUT)

"""``stream.send_file`` against a ``read`` + ``send_all`` loop (issue 20).

A 64 MiB file (written once, so it is in the page cache) goes out over one
``tcp://`` or ``local://`` connection, several times per measurement, to a
separate sink process (:mod:`._sendfile_peer`, which splices what arrives to
``/dev/null`` and closes at end of file). The figure is MB/s from the first
byte to the sink's close. Both contenders use the same packeteer stream;
the loop reads with ``file.read(size)`` (64 KiB, as ``shutil`` copies on
Linux, and 1 MiB) and sends each chunk with ``send_all``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import BinaryIO

import trio

import packeteer_trio as pt

from ._common import Config, Row, measure, progress, rows_from, temp_dir

FILE_BYTES = 64 * 1024 * 1024
SENDS = 8  # the file this many times per measurement (scaled)
OURS = "send_file"
LOOPS = {"read + send_all, 64 KiB": 65536, "read + send_all, 1 MiB": 1 << 20}
TARGET = 1.5


class Sink:
    """The sink process: where to connect."""

    def __init__(self, directory: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", f"{__package__}._sendfile_peer", directory],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        port, path = self._process.stdout.readline().split()
        self.urls = {"tcp": f"tcp://127.0.0.1:{port}", "local": f"local://{path}"}

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(10)


def measurement(
    url: str,
    path: str,
    sends: int,
    send: Callable[[pt.Stream, BinaryIO], Awaitable[None]],
) -> Callable[[], float]:
    """One contender: MB/s for *sends* copies of the file over a new connection."""

    async def main() -> float:
        async with await pt.connect(url) as stream:
            with open(path, "rb") as file:
                start = time.perf_counter()
                for _ in range(sends):
                    await send(stream, file)
                await stream.send_eof()
                while await stream.receive_some():  # the sink's close: all arrived
                    pass
                seconds = time.perf_counter() - start
        return sends * FILE_BYTES / seconds / 1e6

    return lambda: trio.run(main)


async def with_send_file(stream: pt.Stream, file: BinaryIO) -> None:
    await stream.send_file(file)


def copy_loop(size: int) -> Callable[[pt.Stream, BinaryIO], Awaitable[None]]:
    async def loop(stream: pt.Stream, file: BinaryIO) -> None:
        file.seek(0)
        while data := file.read(size):
            await stream.send_all(data)

    return loop


def run(config: Config) -> list[Row]:
    if sys.platform != "linux":
        progress("sendfile: skipped (its sink splices: Linux only)")
        return []
    sends = config.work(SENDS)
    rows: list[Row] = []
    with temp_dir() as directory:
        path = os.path.join(directory, "64MiB.bin")
        with open(path, "wb") as file:
            for _ in range(FILE_BYTES >> 20):
                file.write(os.urandom(1 << 20))
        sink = Sink(directory)
        try:
            for kind, url in sink.urls.items():
                contenders = {OURS: measurement(url, path, sends, with_send_file)}
                for name, size in LOOPS.items():
                    contenders[name] = measurement(url, path, sends, copy_loop(size))
                results = measure(config, contenders, label=kind)
                rows += rows_from(
                    "sendfile",
                    f"{kind}:// 64 MiB file, to a splicing sink",
                    "MB/s",
                    results,
                    OURS,
                    [(name, TARGET) for name in LOOPS],
                )
        finally:
            sink.close()
    return rows

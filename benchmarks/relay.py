"""``packeteer relay`` against a plain trio copy loop and a raw ``os.splice`` loop.

A separate process (:mod:`._relay_peer`) is both outer ends: it sends bulk
data into the relay over TCP and sinks what comes out of it. The middle is,
in turn:

- ``packeteer relay``: the command's per-connection bridge
  (:func:`packeteer_trio.cli.relay.relay_one`) on an accepted Stream, to
  ``tcp://`` at the sink;
- ``trio copy loop``: ``trio.SocketStream``s, ``receive_some`` +
  ``send_all`` in each direction, ``send_eof`` at the end;
- ``raw os.splice loop`` (Linux): blocking sockets, socket -> pipe -> socket
  with ``os.splice``, no event loop at all, through a pipe of the size the
  relay asks for (``PIPE_SIZE``, 256 KiB): the same kernel work, so the ratio
  is what the event loop costs.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Callable

import trio

import packeteer_trio as pt
from packeteer_trio.cli._splice import PIPE_SIZE

from ._common import Config, Row, measure, rows_from

BYTES = 512 * 1024 * 1024
CHUNK = 65536


class Peer:
    """The load process: source and sink."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", f"{__package__}._relay_peer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.sink_port = int(self._readline())

    def _readline(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the relay peer died")
        return line

    def start(self, port: int, total: int) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(f"{port} {total}\n")
        self._process.stdin.flush()

    def result(self) -> float:
        return float(self._readline())

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(10)


def ours(peer: Peer, total: int) -> float:
    from packeteer_trio.cli.relay import relay_one

    args = argparse.Namespace(
        source=pt.URL.parse("tcp://127.0.0.1:0"),
        target=pt.URL.parse(f"tcp://127.0.0.1:{peer.sink_port}"),
        quiet=True,
        stats=False,
    )

    async def main() -> None:
        async with await pt.listen(args.source) as listener:
            assert listener.url.port is not None
            peer.start(listener.url.port, total)
            stream = await listener.accept()
        await relay_one(stream, 1, args)

    trio.run(main)
    return peer.result()


async def _copy(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    while data := await source.receive_some(CHUNK):
        await sink.send_all(data)
    await sink.send_eof()


def trio_copy(peer: Peer, total: int) -> float:
    async def main() -> None:
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listener:
            peer.start(listener.socket.getsockname()[1], total)
            down = await listener.accept()
        async with down, await trio.open_tcp_stream("127.0.0.1", peer.sink_port) as up:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_copy, down, up)
                nursery.start_soon(_copy, up, down)

    trio.run(main)
    return peer.result()


if sys.platform == "linux":

    def _splice_all(source: int, sink: int, pipe: tuple[int, int]) -> None:
        import fcntl

        read_end, write_end = pipe
        size = fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        while count := os.splice(source, write_end, size):
            while count:
                count -= os.splice(read_end, sink, count)

    def raw_splice(peer: Peer, total: int) -> float:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            peer.start(listener.getsockname()[1], total)
            down, _ = listener.accept()
        pipe = os.pipe()
        try:
            with down, socket.create_connection(("127.0.0.1", peer.sink_port)) as up:
                _splice_all(down.fileno(), up.fileno(), pipe)
                up.shutdown(socket.SHUT_WR)
                # The way back carries only the sink's end of file.
                while up.recv(CHUNK):
                    pass
                down.shutdown(socket.SHUT_WR)
        finally:
            for fd in pipe:
                os.close(fd)
        return peer.result()


def run(config: Config) -> list[Row]:
    total = config.work(BYTES // (1 << 20), 16) * (1 << 20)
    peer = Peer()
    try:
        contenders: dict[str, Callable[[], float]] = {
            "packeteer relay": lambda: ours(peer, total),
            "trio copy loop": lambda: trio_copy(peer, total),
        }
        if sys.platform == "linux":
            contenders["raw os.splice loop"] = lambda: raw_splice(peer, total)
        results = measure(config, contenders, label="relay")
    finally:
        peer.close()
    pairs: list[tuple[str, float | None]] = [("trio copy loop", None)]
    if "raw os.splice loop" in results:
        pairs.append(("raw os.splice loop", 0.8))
    return rows_from(
        "relay",
        "tcp -> tcp relay, bulk one way",
        "MB/s",
        results,
        "packeteer relay",
        pairs,
    )

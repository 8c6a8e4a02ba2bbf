"""relay's zero-copy path (os.splice on Linux): same bytes, same ends, same errors."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest
import trio

import packeteer_trio as pt
from packeteer_trio import Stream
from packeteer_trio.cli import build_parser
from packeteer_trio.cli._splice import splice_copy
from packeteer_trio.cli.relay import relay_one

from .conftest import open_fds

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="os.splice is Linux-only"
)
DATA = os.urandom(3 * 1024 * 1024 + 123)
pytestmark = pytest.mark.trio


async def pair(url: str) -> tuple[Stream, Stream]:
    async with await pt.listen(url) as listener:
        client = await pt.connect(listener.url)
        return client, await listener.accept()


async def read_all(stream: Stream) -> bytes:
    parts = []
    while data := await stream.receive_some():
        parts.append(data)
    return b"".join(parts)


async def send_then_eof(stream: Stream, data: bytes) -> None:
    await stream.send_all(data)
    await stream.send_eof()


@linux_only
@pytest.mark.parametrize("sink_url", ["tcp://127.0.0.1:0", "local://", "anon://"])
async def test_splice_moves_every_byte_then_passes_eof(
    sink_url: str, tmp_path: Path
) -> None:
    source_far, source = await pair("tcp://127.0.0.1:0")
    if sink_url == "anon://":
        sink = sink_far = await pt.connect(sink_url)  # reads back what is written
    elif sink_url == "local://":
        sink, sink_far = await pair(f"local://{tmp_path}/s.sock")
    else:
        sink, sink_far = await pair(sink_url)
    counted: list[int] = []
    received = b""
    spliced = False

    async def move() -> None:
        nonlocal spliced
        spliced = await splice_copy(source, sink, counted.append)

    async def collect() -> None:
        nonlocal received
        received = await read_all(sink_far)

    async with source_far, source, sink, sink_far, trio.open_nursery() as nursery:
        nursery.start_soon(send_then_eof, source_far, DATA)
        nursery.start_soon(move)
        nursery.start_soon(collect)
    assert spliced
    assert sum(counted) == len(DATA)
    assert hashlib.sha256(received).digest() == hashlib.sha256(DATA).digest()


async def test_pipe_sources_are_left_to_the_copy_loop() -> None:
    # A pipe source (anon, fifo) keeps its own end-of-file rules: not spliced.
    async with await pt.connect("anon://") as source:
        client, server = await pair("tcp://127.0.0.1:0")
        async with client, server:
            assert not await splice_copy(source, client, lambda n: None)
            await source.send_all(b"still here")
            assert await source.receive_some() == b"still here"


@linux_only
async def test_cancelled_splice_leaves_no_descriptors() -> None:
    before = open_fds()
    source_far, source = await pair("tcp://127.0.0.1:0")
    sink, sink_far = await pair("tcp://127.0.0.1:0")
    async with source_far, source, sink, sink_far:
        with trio.move_on_after(0.2) as scope:
            await splice_copy(source, sink, lambda n: None)  # nothing comes
        assert scope.cancelled_caught
    assert open_fds() == before


@linux_only
async def test_splice_reports_a_closed_sink_as_the_streams_do() -> None:
    source_far, source = await pair("tcp://127.0.0.1:0")
    sink, sink_far = await pair("tcp://127.0.0.1:0")
    await sink_far.aclose()  # nobody reads: the sink side breaks

    async def feed() -> None:
        while True:
            await source_far.send_all(b"x" * 65536)

    async with source_far, source, sink, trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        with pytest.raises(trio.BrokenResourceError):
            await splice_copy(source, sink, lambda n: None)
        nursery.cancel_scope.cancel()


async def test_relay_one_bridges_both_ways_and_counts(tmp_path: Path) -> None:
    local = f"local://{tmp_path}/target.sock"
    if sys.platform == "win32":  # the local stream transport there
        local = f"pipe:///packeteer-splice-test-{os.getpid()}"
    async with await pt.listen(local) as target:
        # The relay's own defaults (--linger …), as the command line sets them.
        args = build_parser().parse_args(["relay", "-q", "tcp://:0", str(target.url)])
        client, down = await pair("tcp://127.0.0.1:0")
        reply = b""

        async def target_side() -> None:
            async with await target.accept() as stream:
                got = await read_all(stream)
                await stream.send_all(hashlib.sha256(got).digest())

        async def client_side() -> None:
            nonlocal reply
            async with client:
                await send_then_eof(client, DATA)
                reply = await read_all(client)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(target_side)
            nursery.start_soon(client_side)
            nursery.start_soon(relay_one, down, 1, args)
    assert reply == hashlib.sha256(DATA).digest()

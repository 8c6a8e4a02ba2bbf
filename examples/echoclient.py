#!/usr/bin/env python3
"""Echo client for any connector URL: the trio port of packeteer's echoclient.

    python examples/echoclient.py tcp4://127.0.0.1:4242
    python examples/echoclient.py local:///tmp/echo.sock
    python examples/echoclient.py udp4://127.0.0.1:4242
    python examples/echoclient.py 'local:///tmp/echo.sock?behaviour=datagram' \\
        'local:///tmp/client.sock?behaviour=datagram'

Every line read from stdin is sent to the server, and every echo that comes
back is printed as "Received: ...". Type 'exit' (or end stdin) to stop.
Datagram URLs take an optional second URL, the local address to bind, so the
server's replies have somewhere to go (udp:// and Linux pick one themselves).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable

import trio

import packeteer_trio as p7r

BUFSIZE = 8192
LINGER = 2.0  # seconds to wait for the last datagram echoes after stdin ends


def is_datagram(url: p7r.URL) -> bool:
    return url.behaviour == "datagram" or url.scheme in ("udp", "udp4", "udp6")


async def read_line() -> str:
    # A worker thread reads the blocking stdin; abandoning it on cancel keeps
    # Ctrl-C instant. "" means end of input.
    return await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


async def send_lines(send: Callable[[bytes], Awaitable[None]]) -> int:
    """Send every line of stdin until 'exit' or end of file; return the count."""
    print("Any line you enter is sent to the echo server, except if you type 'exit'.")
    count = 0
    while line := await read_line():
        line = line.rstrip("\r\n")
        if line == "exit":
            break
        await send(line.encode())
        count += 1
    return count


async def stream_client(url: p7r.URL) -> None:
    stream = await p7r.connect(url)
    async with stream:

        async def send(line: bytes) -> None:
            await stream.send_all(line + b"\n")

        if not getattr(stream, "can_receive", True):  # a FIFO: nothing comes back
            await send_lines(send)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(print_stream_echoes, stream)
            await send_lines(send)
            # Half-close: the server sees end of file, echoes what is left and
            # closes, which ends print_stream_echoes.
            await stream.send_eof()


async def print_stream_echoes(stream: p7r.Stream) -> None:
    pending = b""
    while data := await stream.receive_some(BUFSIZE):
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            print(f"Received: {line.decode(errors='replace')}")
    if pending:
        print(f"Received: {pending.decode(errors='replace')}")


async def datagram_client(url: p7r.URL, local: str | None) -> None:
    channel = await p7r.connect_datagram(url, local=local)
    async with channel, trio.open_nursery() as nursery:
        received, expected = 0, -1
        all_back = trio.Event()

        async def print_echoes() -> None:
            nonlocal received
            async for data in channel:
                received += 1
                print(f"Received: {data.decode(errors='replace')}")
                if received == expected:
                    all_back.set()

        nursery.start_soon(print_echoes)
        expected = await send_lines(channel.send)
        if received >= expected:
            all_back.set()
        # Datagrams have no end of file, and may be lost: wait a little.
        with trio.move_on_after(LINGER):
            await all_back.wait()
        nursery.cancel_scope.cancel()


async def main(text: str, local: str | None) -> None:
    url = p7r.URL.parse(text)
    print(f"Connect URL is: {url}")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_ctrl_c, nursery.cancel_scope)
        if is_datagram(url):
            await datagram_client(url, local)
        else:
            await stream_client(url)
        nursery.cancel_scope.cancel()  # done: stop watching for Ctrl-C


async def stop_on_ctrl_c(scope: trio.CancelScope) -> None:
    """Ctrl-C cancels *scope*: a clean stop that closes (and removes) sockets."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(
            "Usage: echoclient.py connect-url [local-url]\n\n"
            "Datagram URLs may take a local URL to bind, for the replies."
        )
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        trio.run(main, sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
    except (p7r.InvalidURL, OSError, trio.BrokenResourceError) as exc:
        sys.exit(f"echoclient: {exc}")

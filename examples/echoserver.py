#!/usr/bin/env python3
"""Echo server for any connector URL: the trio port of packeteer's echoserver.

    python examples/echoserver.py tcp4://127.0.0.1:4242
    python examples/echoserver.py local:///tmp/echo.sock
    python examples/echoserver.py udp4://127.0.0.1:4242
    python examples/echoserver.py 'local:///tmp/echo.sock?behaviour=datagram'

Stream URLs: every connection gets its own task, which prints each message
and writes it straight back. Datagram URLs: every datagram is printed with
its sender and sent back to that sender. Port 0 picks a free port; the line
"Listening on URL" says which. Ctrl-C stops the server.

Where packeteer's example registers callbacks with its scheduler, this one
is plain trio: one task per connection, no callbacks (see
scheduler_style.py for the callback style, side by side).
"""

from __future__ import annotations

import signal
import sys

import trio

import packeteer_trio as p7r

BUFSIZE = 8192


def is_datagram(url: p7r.URL) -> bool:
    return url.behaviour == "datagram" or url.scheme in ("udp", "udp4", "udp6")


async def echo_stream(stream: p7r.Stream) -> None:
    """Handle one connection until the client closes it."""
    print("Incoming connection accepted.")
    async with stream:
        try:
            while data := await stream.receive_some(BUFSIZE):
                print(f"Received: {data.decode(errors='replace').rstrip()}")
                if getattr(stream, "can_send", True):  # a FIFO end only reads
                    await stream.send_all(data)
        except trio.BrokenResourceError as exc:
            print(f"Connection lost: {exc}", file=sys.stderr)
    print("Connection closed.")


async def serve_streams(url: p7r.URL) -> None:
    async with trio.open_nursery() as nursery:
        # serve() reports its listeners once they listen: that is when the
        # real address (port 0 -> a free port) is known.
        listeners = await nursery.start(p7r.serve, url, echo_stream)
        print(f"Listening on {listeners[0].url}")


async def serve_datagrams(url: p7r.URL) -> None:
    sock = await p7r.open_datagram(url)
    async with sock:
        print(f"Listening on {sock.url}")
        while True:
            data, sender = await sock.receive_from()
            print(f"Received from {sender}: {data.decode(errors='replace')}")
            try:
                # The sender URL goes straight back into send_to().
                await sock.send_to(data, sender)
            except OSError as exc:  # e.g. a local:// sender with no address
                print(f"Cannot answer {sender}: {exc}", file=sys.stderr)


async def main(text: str) -> None:
    # Parsing first: a bad URL fails here, before any socket exists.
    url = p7r.URL.parse(text)
    print(f"Listen URL is: {url}")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_ctrl_c, nursery.cancel_scope)
        await (serve_datagrams(url) if is_datagram(url) else serve_streams(url))


async def stop_on_ctrl_c(scope: trio.CancelScope) -> None:
    """Ctrl-C cancels *scope*: a clean stop that closes (and removes) sockets."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("Usage: echoserver.py listen-url")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        trio.run(main, sys.argv[1])
    except (p7r.InvalidURL, OSError) as exc:
        sys.exit(f"echoserver: {exc}")

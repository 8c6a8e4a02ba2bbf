#!/usr/bin/env python3
"""One echo server written twice: packeteer's callback style and plain trio.

    python examples/scheduler_style.py                          # both, self-test
    python examples/scheduler_style.py tcp4://127.0.0.1:4242          # callbacks
    python examples/scheduler_style.py tcp4://127.0.0.1:4242 --plain  # tasks

Code ported from packeteer keeps its shape with ``open_scheduler()``: register
a READ callback on the listener, accept in it, register a READ callback on
each new connection. In plain trio the same server is a handler task per
connection, run by ``serve()``. Both are structured: leaving the block (or
cancelling it) stops everything, and an exception in a callback or handler
ends the server unless the callback handles it.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile

import trio

import packeteer_trio as p7r
from packeteer_trio.scheduler import Events, open_scheduler

BUFSIZE = 8192


# -- the scheduler style: callbacks, as in packeteer ------------------------------


async def scheduler_echo_server(
    url: str, *, task_status: trio.TaskStatus[p7r.URL] = trio.TASK_STATUS_IGNORED
) -> None:
    listener = await p7r.listen(url)
    async with listener, open_scheduler() as sched:

        async def on_data(now: float, events: Events, stream: p7r.Stream) -> None:
            # Level-triggered: runs again while there is more to read.
            try:
                data = await stream.receive_some(BUFSIZE)
                if data:
                    await stream.send_all(data)
                    return
            except trio.BrokenResourceError:
                pass  # an error raised here would stop the whole scheduler
            await stream.aclose()  # closing the stream ends its registration

        async def on_accept(now: float, events: Events, lst: p7r.Listener) -> None:
            stream = await lst.accept()
            sched.register_connector(Events.READ, stream, on_data)

        sched.register_connector(Events.READ, listener, on_accept)
        task_status.started(listener.url)
        await trio.sleep_forever()


# -- the plain trio style: a task per connection ----------------------------------


async def echo_handler(stream: p7r.Stream) -> None:
    async with stream:
        try:
            while data := await stream.receive_some(BUFSIZE):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # the client went away; serve() keeps going either way


async def plain_echo_server(
    url: str, *, task_status: trio.TaskStatus[p7r.URL] = trio.TASK_STATUS_IGNORED
) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(p7r.serve, url, echo_handler)
        task_status.started(listeners[0].url)


# -- running them ----------------------------------------------------------------


async def ask(url: p7r.URL, message: bytes) -> bytes:
    """Connect, send *message*, half-close, and read the echo to the end."""
    async with await p7r.connect(url) as stream:
        await stream.send_all(message)
        await stream.send_eof()
        echo = b""
        while data := await stream.receive_some(BUFSIZE):
            echo += data
        return echo


def local_url(tmp: str, name: str) -> str:
    """A local transport for the self-test: AF_UNIX, a named pipe on Windows."""
    if sys.platform == "win32":
        return f"pipe:///packeteer-example-{os.getpid()}-{len(name)}"
    return f"local://{tmp}/{len(name)}.sock"


async def self_test() -> None:
    """Start both servers on loopback and a local transport, and ask each."""
    servers = [("scheduler", scheduler_echo_server), ("plain trio", plain_echo_server)]
    with tempfile.TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            for name, server in servers:
                for url in ("tcp4://127.0.0.1:0", local_url(tmp, name)):
                    bound = await nursery.start(server, url)
                    echo = await ask(bound, f"hello, {name} style".encode())
                    print(f"{name:>10} style on {bound}: {echo.decode()!r}")
            nursery.cancel_scope.cancel()


async def serve_forever(url: str, plain: bool) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_ctrl_c, nursery.cancel_scope)
        server = plain_echo_server if plain else scheduler_echo_server
        bound = await nursery.start(server, url)
        print(f"Listening on {bound} ({'plain trio' if plain else 'scheduler'} style)")


async def stop_on_ctrl_c(scope: trio.CancelScope) -> None:
    """Ctrl-C cancels *scope*: a clean stop that closes (and removes) sockets."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


if __name__ == "__main__":
    args = [arg for arg in sys.argv[1:] if arg != "--plain"]
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        if not args:
            trio.run(self_test)
        else:
            trio.run(serve_forever, args[0], "--plain" in sys.argv)
    except (p7r.InvalidURL, OSError) as exc:
        sys.exit(f"scheduler_style: {exc}")

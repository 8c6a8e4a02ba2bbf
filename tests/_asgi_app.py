"""An ASGI app for tests/test_asgi.py, and a server process around it.

``python -m tests._asgi_app URL [--activate NAME]`` serves :func:`app` with
``packeteer_trio.http.serve_asgi`` on URL, prints the bound URL, and exits 0
after a request to ``/stop``. ``--activate NAME`` first plays the service
manager (as tests/_doc_block.py): the descriptor ``$DOC_LISTEN_FD`` becomes
fd 3, with ``LISTEN_FDS``, ``LISTEN_PID`` and ``LISTEN_FDNAMES`` set.

Routes: ``/echo`` answers with the request body; ``/stop`` ends the server
(its ``shutdown_trigger``); anything else with ``METHOD PATH LENGTH``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def make_app(
    stop: Callable[[], None] | None = None,
) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            event = await receive()
            if event["type"] != "http.request":  # the client went away
                return
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        if scope["path"] == "/echo":
            reply = bytes(body)
        else:
            reply = f"{scope['method']} {scope['path']} {len(body)}".encode()
        headers = [(b"content-length", str(len(reply)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": reply})
        if scope["path"] == "/stop" and stop is not None:
            stop()

    return app


async def _serve(url: str) -> None:
    from packeteer_trio import http

    stopped = trio.Event()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            lambda task_status: http.serve_asgi(
                make_app(stopped.set),
                url,
                shutdown_trigger=stopped.wait,
                task_status=task_status,
            )
        )
        print(bound, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--activate")
    args = parser.parse_args()
    if args.activate:
        from ._doc_block import activate

        activate(args.activate)
    trio.run(_serve, args.url)


if __name__ == "__main__":
    sys.exit(main())

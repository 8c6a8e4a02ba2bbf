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
from collections.abc import Awaitable, Callable

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


def make_app(stop: Callable[[], None] | None = None) -> ASGIApp:
    async def app(
        scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            event = await receive()
            if event["type"] != "http.request":  # the client went away
                return
            body += event["body"]
            if not event["more_body"]:
                break
        if scope["path"] == "/echo":
            reply = bytes(body)
        else:
            reply = f"{scope['method']} {scope['path']} {len(body)}".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(reply)).encode())],
                "trailers": False,
            }
        )
        await send({"type": "http.response.body", "body": reply, "more_body": False})
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
    main()

# pyright: strict
"""A typed user program of ``packeteer_trio.http``: httpx over a packeteer URL.

Checked by ``mypy --strict`` and pyright strict, run by ``tests/test_typing.py``;
see ``trio_program.py`` for how the checks work. The server is a few lines of
HTTP/1.1 on ``serve`` (one response per connection).
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import trio

import packeteer_trio as pt
from packeteer_trio import http

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type


async def hello(stream: pt.Stream) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = await stream.receive_some()
        if not chunk:
            return
        request += chunk
    target = request.split(b" ", 2)[1]
    body = b"hello " + target
    await stream.send_all(
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
        % (len(body), body)
    )


async def main(tmp: Path) -> None:
    where = "tcp://127.0.0.1:0" if sys.platform == "win32" else f"local://{tmp}/h.sock"
    async with trio.open_nursery() as nursery:
        listeners: list[pt.Listener] = await nursery.start(pt.serve, where, hello)
        url = listeners[0].url
        async with http.client(url) as client:
            assert_type(client, httpx.AsyncClient)
            response = await client.get("/world")
            assert response.status_code == 200 and response.text == "hello /world"
        transport = http.URLTransport(url)
        assert_type(transport.url, pt.URL)
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get("http://localhost/again")
            assert response.text == "hello /again"
        nursery.cancel_scope.cancel()

"""Workloads that tests/test_faults.py runs in a subprocess under strace.

``python tests/_fault_workload.py KIND FACE [URL]`` where FACE is ``trio``,
``anyio-asyncio`` or ``anyio-trio``:

- ``serve FACE URL``: a stream echo server through ``serve()``; the handler
  echoes until end of file and reports (but survives) a broken connection.
- ``dgram FACE URL many|one``: a datagram echo server (``receive_many`` /
  ``send_many``, or ``receive_from`` / ``send_to``). Errors from the socket
  are reported and the server goes on.
- ``client FACE``: runs the commands the test writes to its stdin, one JSON
  object per line (``connect``, ``listen``, ``open_datagram``,
  ``connect_datagram``, ``pipe``), and answers each with one JSON line.

Every report is one JSON line on stdout. The workload talks to the test only
through ``readv``/``writev`` on stdin/stdout, syscalls the fault tests never
tamper with, so an injected ``read``/``write`` fault hits the package and
nothing else. The tracer attaches after start-up (``strace -p``), so the
interpreter's own start-up is never tampered with either; ``warm`` runs every
command once before that so no lazy import happens under the tracer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import trio

import packeteer_trio as pt
from packeteer_trio import anyio_compat

if sys.platform == "win32":  # pragma: no cover
    raise SystemExit("these workloads run under strace: Linux only")

Report = dict[str, Any]


def emit(report: Report) -> None:
    os.writev(1, [json.dumps(report).encode() + b"\n"])


def failure(exc: BaseException) -> Report:
    leaf, group = exc, False
    # Duck-typed: on Python 3.10 the groups come from the exceptiongroup backport.
    inner = getattr(leaf, "exceptions", None)
    while isinstance(inner, tuple) and inner:
        group, leaf = True, inner[0]
        inner = getattr(leaf, "exceptions", None)
    return {
        "error": type(leaf).__name__,
        "errno": getattr(leaf, "errno", None),
        "message": str(leaf),
        "group": group,
    }


def run(face: str, main: Callable[[], Awaitable[None]]) -> None:
    if face == "trio":
        trio.run(main)
    else:
        anyio.run(main, backend=face.removeprefix("anyio-"))


# -- servers ------------------------------------------------------------------


async def serve_trio(url: str) -> None:
    async def echo(stream: pt.Stream) -> None:
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
            await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            emit({"event": "connection", **failure(exc)})

    async with trio.open_nursery() as nursery:
        started = await nursery.start(pt.serve, url, echo)
        emit({"ready": str(started[0].url)})


async def serve_anyio(url: str) -> None:
    async def echo(stream: Any) -> None:
        try:
            async with stream:  # anyio's serve leaves closing to the handler
                while True:
                    try:
                        data = await stream.receive()
                    except anyio.EndOfStream:
                        break
                    await stream.send(data)
                await stream.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            emit({"event": "connection", **failure(exc)})

    listener = await anyio_compat.listen(url)
    emit({"ready": str(listener.url)})
    await listener.serve(echo)


async def dgram_server(face: str, url: str, mode: str) -> None:
    if face == "trio":
        sock: Any = await pt.open_datagram(url)
    else:
        sock = await anyio_compat.open_datagram(url)
    async with sock:
        emit({"ready": str(sock.url)})
        while True:
            try:
                if mode == "many":
                    await sock.send_many(await sock.receive_many())
                else:
                    data, sender = await sock.receive_from()
                    await sock.send_to(data, sender)
            except OSError as exc:  # the socket must stay usable
                emit({"event": "datagram", **failure(exc)})


# -- client commands ------------------------------------------------------------


async def connect_trio(url: str, payload: bytes) -> bytes:
    async with await pt.connect(url) as stream:
        await stream.send_all(payload)
        await stream.send_eof()
        parts = []
        while data := await stream.receive_some():
            parts.append(data)
        return b"".join(parts)


async def connect_anyio(url: str, payload: bytes) -> bytes:
    async with await anyio_compat.connect(url) as stream:
        await stream.send(payload)
        await stream.send_eof()
        parts = []
        while True:
            try:
                parts.append(await stream.receive())
            except anyio.EndOfStream:
                return b"".join(parts)


async def pipe_trio(url: str, size: int) -> str:
    """Push *size* bytes through an in-process pipe; the receiver's SHA-256."""
    payload = bytes(range(256)) * (size // 256)
    digest = hashlib.sha256()
    if url.startswith("fifo:"):
        listener = await pt.listen(url)
        async with listener, await pt.connect(url) as sender:
            async with await listener.accept() as receiver:
                await _through(sender, receiver, payload, digest)
    else:
        async with await pt.connect(url) as stream:
            await _through(stream, stream, payload, digest)
    return digest.hexdigest()


async def _through(
    sender: pt.Stream, receiver: pt.Stream, payload: bytes, digest: Any
) -> None:
    async def send() -> None:
        for start in range(0, len(payload), 65536):
            await sender.send_all(payload[start : start + 65536])
        await sender.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        got = 0
        while got < len(payload):
            data = await receiver.receive_some()
            if not data:
                break
            digest.update(data)
            got += len(data)


async def pipe_anyio(url: str, size: int) -> str:
    """The same through the anyio face (read ahead on asyncio)."""
    payload = bytes(range(256)) * (size // 256)
    digest = hashlib.sha256()
    if url.startswith("fifo:"):
        listener = await anyio_compat.listen(url)
        async with listener, await anyio_compat.connect(url) as sender:
            async with await listener.accept() as receiver:
                await _through_anyio(sender, receiver, payload, digest)
    else:
        async with await anyio_compat.connect(url) as stream:
            await _through_anyio(stream, stream, payload, digest)
    return digest.hexdigest()


async def _through_anyio(
    sender: anyio.abc.ByteStream,
    receiver: anyio.abc.ByteStream,
    payload: bytes,
    digest: Any,
) -> None:
    async def send() -> None:
        for start in range(0, len(payload), 65536):
            await sender.send(payload[start : start + 65536])
        await sender.send_eof()

    async with anyio.create_task_group() as group:
        group.start_soon(send)
        got = 0
        while got < len(payload):
            try:
                data = await receiver.receive()
            except anyio.EndOfStream:
                break
            digest.update(data)
            got += len(data)


async def pass_fds(url: str) -> bool:
    """anyio face: send a descriptor over a local:// connection to ourselves."""
    listener = await anyio_compat.listen(url)
    async with listener, await anyio_compat.connect(url) as client:
        async with await listener.accept() as server:
            assert isinstance(client, anyio.abc.UNIXSocketStream)
            assert isinstance(server, anyio.abc.UNIXSocketStream)
            read_end, write_end = os.pipe()
            try:
                await client.send_fds(b"fd", [write_end])
                message, fds = await server.receive_fds(2, 1)
            finally:
                os.close(read_end)
                os.close(write_end)
            for fd in fds:
                os.close(fd)
            return message == b"fd" and len(fds) == 1


async def command(face: str, request: Report) -> Report:
    op, url = request["op"], request["url"]
    trio_face = face == "trio"
    if op == "connect":
        payload = os.urandom(request.get("size", 1000))
        if trio_face:
            echoed = await connect_trio(url, payload)
        else:
            echoed = await connect_anyio(url, payload)
        return {"ok": echoed == payload, "bytes": len(echoed)}
    if op == "listen":
        module: Any = pt if trio_face else anyio_compat
        listener = await module.listen(url)
        bound = str(listener.url)
        await listener.aclose()
        return {"ok": True, "url": bound}
    if op in ("open_datagram", "connect_datagram"):
        module = pt if trio_face else anyio_compat
        sock = await getattr(module, op)(url)
        bound = str(sock.url)
        await sock.aclose()
        return {"ok": True, "url": bound}
    if op == "dgram":
        module = pt if trio_face else anyio_compat
        async with await module.connect_datagram(
            url, local=request.get("local")
        ) as chan:
            for i in range(3):
                message = b"datagram %d" % i
                await chan.send(message)
                if await chan.receive() != message:
                    return {"ok": False}
        return {"ok": True}
    if op == "fds":
        return {"ok": await pass_fds(url)}
    if op == "pipe":
        size = request.get("size", 1 << 20)
        expected = hashlib.sha256(bytes(range(256)) * (size // 256)).hexdigest()
        through = pipe_trio if trio_face else pipe_anyio
        return {"ok": await through(url, size) == expected}
    raise ValueError(f"unknown op {op!r}")


def client(face: str) -> None:
    pending = b""
    while True:
        while b"\n" not in pending:
            buffer = bytearray(65536)
            count = os.readv(0, [buffer])
            if not count:
                return
            pending += bytes(buffer[:count])
        line, pending = pending.split(b"\n", 1)
        request = json.loads(line)
        result: Report = {}

        async def main(request: Report = request, result: Report = result) -> None:
            with anyio.fail_after(request.get("timeout", 10)):
                result.update(await command(face, request))

        try:
            run(face, main)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            result = failure(exc)
        emit(result)


class _NoTraceback(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return ""  # the package's records name the errno; stderr stays scannable


def main(argv: list[str]) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_NoTraceback("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("packeteer_trio").addHandler(handler)
    kind, face = argv[0], argv[1]
    if kind == "client":
        emit({"ready": face})
        client(face)
    elif kind == "serve":
        run(face, lambda: (serve_trio if face == "trio" else serve_anyio)(argv[2]))
    elif kind == "dgram":
        run(face, lambda: dgram_server(face, argv[2], argv[3]))
    else:
        raise SystemExit(f"unknown workload {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

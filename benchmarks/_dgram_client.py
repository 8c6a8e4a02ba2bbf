"""The load generator of the datagram comparison, run as a separate process.

``python -m benchmarks._dgram_client`` reads one command per line on stdin::

    inet HOST PORT WINDOW SECONDS MODE          (UDP over IPv4)
    unix SERVER_PATH CLIENT_PATH WINDOW SECONDS MODE

and for each sends WINDOW 64-byte requests, then one more for every reply,
for SECONDS (the first tenth is warm-up, not counted); then it sends
``STOP`` to the server and prints ``<replies per second> <lost>``.

Plain blocking stdlib sockets. MODE ``connected`` connects the socket to
the server and uses ``send``/``recv``: the leanest client Python has, so the
server is the bottleneck. MODE ``sendto`` uses ``sendto``/``recvfrom`` on an
unconnected socket, as most clients are written: a little slower, so a
blocking server sometimes waits for it. SO_RCVTIMEO (a kernel timeout: no
extra poll per receive) refills the window if datagrams were lost.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from collections.abc import Callable

assert sys.platform != "win32", "POSIX only: AF_UNIX datagram sockets"

PAYLOAD = b"q" * 64
STOP = b"STOP"
_REFILL_AFTER = 0.1  # seconds without a reply: assume the window was lost


def load(
    send: Callable[[bytes], object],
    receive: Callable[[int], object],
    window: int,
    seconds: float,
) -> tuple[float, int]:
    lost = 0
    for _ in range(window):
        send(PAYLOAD)
    start = time.perf_counter()
    warm = start + seconds / 10
    end = start + seconds
    replies = 0
    counted_from = -1
    counted_at = 0.0
    while True:
        try:
            receive(2048)
        except BlockingIOError:  # SO_RCVTIMEO: the server dropped some
            lost += window
            for _ in range(window):
                send(PAYLOAD)
            continue
        replies += 1
        send(PAYLOAD)
        if not replies & 127:
            now = time.perf_counter()
            if counted_from < 0 and now >= warm:
                counted_from, counted_at = replies, now
            elif now >= end:
                break
    elapsed = time.perf_counter() - counted_at
    return (replies - counted_from) / elapsed, lost


def run(command: list[str]) -> str:
    kind, mode = command[0], command[-1]
    server: str | tuple[str, int]
    if kind == "inet":
        host, port, window, seconds = command[1:-1]
        server = (host, int(port))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
    elif kind == "unix":
        server, client_path, window, seconds = command[1:-1]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(client_path)
    else:
        raise ValueError(f"unknown command {command!r}")
    timeout = struct.pack("ll", 0, int(_REFILL_AFTER * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
    try:
        send: Callable[[bytes], object]
        receive: Callable[[int], object]
        if mode == "connected":
            sock.connect(server)
            send, receive = sock.send, sock.recv
        elif mode == "sendto":
            sendto, receive = sock.sendto, sock.recvfrom

            def send(data: bytes) -> object:
                return sendto(data, server)

        else:
            raise ValueError(f"unknown mode {mode!r}")
        rate, lost = load(send, receive, int(window), float(seconds))
        # The requests still in flight come back to nobody; STOP ends the server.
        for _ in range(3):
            try:
                send(STOP)
            except OSError:
                break  # it has already gone
            time.sleep(0.01)
    finally:
        sock.close()
        if kind == "unix":
            os.unlink(client_path)
    return f"{rate:.1f} {lost}"


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            print(run(line.split()), flush=True)


if __name__ == "__main__":
    main()

"""The load generator of the workers comparison, run as a separate process.

``python -m benchmarks._load_client`` reads one command per line on stdin::

    HOST PORT CONNECTIONS SECONDS

opens CONNECTIONS tcp connections, keeps one 64-byte request in flight on
each (a new one as soon as the echo is back), for SECONDS (the first tenth
is warm-up, not counted), closes them and prints ``<requests per second>
<CPU seconds it used> <wall seconds>`` (CPU and wall over the whole command,
connecting included). Plain non-blocking stdlib sockets and one epoll: the
leanest many-connection client Python has.
"""

from __future__ import annotations

import resource
import select
import socket
import sys
import time

assert sys.platform.startswith("linux"), "Linux only: epoll"

REQUEST = b"r" * 64


def load(host: str, port: int, connections: int, seconds: float) -> str:
    began = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_began = usage.ru_utime + usage.ru_stime
    socks = [socket.create_connection((host, port)) for _ in range(connections)]
    poller = select.epoll()
    pending: dict[int, int] = {}  # fd -> bytes of the echo still to come
    by_fd: dict[int, socket.socket] = {}
    for sock in socks:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        by_fd[sock.fileno()] = sock
        poller.register(sock.fileno(), select.EPOLLIN)
        sock.send(REQUEST)
        pending[sock.fileno()] = len(REQUEST)
    start = time.perf_counter()
    warm, end = start + seconds / 10, start + seconds
    replies, counted_from, counted_at, now = 0, -1, 0.0, start
    while now < end:
        for fd, _ in poller.poll(1.0):
            got = len(by_fd[fd].recv(65536))
            if not got:
                raise ConnectionError("the server closed a connection")
            pending[fd] -= got
            if pending[fd] <= 0:
                replies += 1
                by_fd[fd].send(REQUEST)
                pending[fd] += len(REQUEST)
        now = time.perf_counter()
        if counted_from < 0 and now >= warm:
            counted_from, counted_at = replies, now
    rate = (replies - counted_from) / (now - counted_at)
    poller.close()
    for sock in socks:
        sock.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_began
    return f"{rate:.1f} {cpu:.3f} {time.perf_counter() - began:.3f}"


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            host, port, connections, seconds = line.split()
            print(load(host, int(port), int(connections), float(seconds)), flush=True)


if __name__ == "__main__":
    main()

"""Both outer ends of the relay comparison, run as a separate process.

``python -m benchmarks._relay_peer`` listens as the *sink* on 127.0.0.1 and
prints its port; then for every ``PORT BYTES`` line on stdin it connects to
the relay at PORT, sends BYTES (1 MiB blocking ``sendall``s), half-closes,
and waits until the sink has seen end of file and the relay has closed the
client's side; it prints the MB/s from the first byte sent to the sink's end
of file. The sink discards with ``MSG_TRUNC`` (no copy), so the relay is what
costs.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

CHUNK = 1 << 20
_DATA = b"r" * CHUNK


def sink(listener: socket.socket, done: list[float]) -> None:
    conn, _ = listener.accept()
    with conn:
        buffer = bytearray(CHUNK)
        flags = getattr(socket, "MSG_TRUNC", 0)
        while conn.recv_into(buffer, CHUNK, flags):
            pass
        done.append(time.perf_counter())


def run(listener: socket.socket, port: int, total: int) -> float:
    done: list[float] = []
    thread = threading.Thread(target=sink, args=(listener, done))
    thread.start()
    with socket.create_connection(("127.0.0.1", port)) as client:
        start = time.perf_counter()
        for _ in range(total // CHUNK):
            client.sendall(_DATA)
        client.shutdown(socket.SHUT_WR)
        thread.join()
        while client.recv(CHUNK):  # the relay passes the sink's close back
            pass
    return total / (done[0] - start) / 1e6


def main() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        print(listener.getsockname()[1], flush=True)
        for line in sys.stdin:
            if line.strip():
                port, total = line.split()
                print(f"{run(listener, int(port), int(total)):.1f}", flush=True)


if __name__ == "__main__":
    main()

"""The sink of the send_file comparison, run as a separate process (Linux).

``python -m benchmarks._sendfile_peer DIRECTORY`` listens on 127.0.0.1 and on
``DIRECTORY/sink.sock`` and prints ``PORT PATH``. Every connection is drained
to end of file and then closed, which is what tells the sender that the
last byte arrived. It drains with ``os.splice`` into a pipe and from there to
``/dev/null``: the bytes are never copied to user space, so the sender is
what costs. It runs until its stdin closes.
"""

# ruff: noqa: E402  (fcntl follows the Linux-only guard on purpose)
from __future__ import annotations

import sys

if sys.platform != "linux":  # pragma: no cover
    raise SystemExit("the send_file benchmark's sink splices: Linux only")
assert sys.platform == "linux"  # for mypy: the rest is checked on Linux only

import fcntl
import os
import socket
import threading

CHUNK = 1 << 20


def drain(listener: socket.socket) -> None:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, CHUNK)
    null = os.open(os.devnull, os.O_WRONLY)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # closed: we are done
        with conn:
            while count := os.splice(conn.fileno(), write_end, CHUNK):
                while count:
                    count -= os.splice(read_end, null, count)


def main() -> None:
    directory = sys.argv[1]
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    local = socket.socket(socket.AF_UNIX)
    path = os.path.join(directory, "sink.sock")
    local.bind(path)
    for listener in (tcp, local):
        listener.listen()
        threading.Thread(target=drain, args=(listener,), daemon=True).start()
    print(tcp.getsockname()[1], path, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin


if __name__ == "__main__":
    main()

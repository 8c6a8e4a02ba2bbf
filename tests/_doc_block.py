"""Run one code block of the docs as a program: ``python _doc_block.py BLOCK.py
SOURCE [--activate NAME] [--tun NAME]``. Driven by test_docs.py.

The block runs as written. Short snippets in the docs ``await`` at top level
(as in an async REPL); those run inside ``trio.run``. ``trio`` and ``pt``
(``packeteer_trio``) are predefined, as docs/cli.md says of its snippets.
*SOURCE* (``docs/cli.md``) names the file in tracebacks; BLOCK.py is padded
so that line numbers are the Markdown file's.

``--activate NAME`` plays the service manager of socket activation: the
descriptor named by ``$DOC_LISTEN_FD`` becomes fd 3, and ``LISTEN_FDS=1``,
``LISTEN_PID`` (this process) and ``LISTEN_FDNAMES=NAME`` are set, as
``systemd-socket-activate`` does in the child it starts.

``--veth NAME`` enters a private network namespace (exit 77 with the reason
where that is not allowed) and creates a veth pair there, NAME with
10.0.0.1/24 and its peer ``NAMEp``, both up: an interface to join multicast
groups on, which exists nowhere else (see _multicast_netns.py).

``--tun NAME`` first enters a private network namespace (exit 77 with the
reason where that is not allowed, as _tuntap_netns.py) and, once interface
NAME exists, gives it 10.200.0.1/24 and sends a few UDP datagrams to
10.200.0.2: inside the namespace only, so that the block has packets to see.
"""

from __future__ import annotations

import argparse
import ast
import os
import socket
import sys
import threading
import time
from pathlib import Path

import trio

import packeteer_trio as pt


def activate(name: str) -> None:
    fd = int(os.environ.pop("DOC_LISTEN_FD"))
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=name)


def tun_traffic(name: str) -> None:
    if sys.platform != "linux":
        raise SystemExit("tun/tap is Linux-only")
    from tests import _tuntap_netns as netns

    netns.enter_private_netns()

    def send() -> None:
        deadline = time.monotonic() + 20
        while not netns.if_exists(name):  # (/sys shows the host's namespace)
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        netns.set_address(name, netns.LOCAL, "255.255.255.0")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(100):  # until the interface is up and routed
                try:
                    sock.sendto(b"doc", (netns.PEER, netns.PEER_PORT))
                except OSError:  # not up (or not routed) yet
                    pass
                time.sleep(0.05)

    threading.Thread(target=send, daemon=True).start()


def veth(name: str) -> None:
    if sys.platform != "linux":
        raise SystemExit("network namespaces are Linux-only")
    from tests import _multicast_netns as mc

    here = mc.Namespaces()  # enters a fresh namespace, and a second one
    try:
        mc.create_veth(name, name + "p", here.a)  # both ends in this one
    except OSError as exc:
        mc.skip(f"cannot create a veth pair: {exc.strerror}")
    mc.bring_up("lo")
    mc.add_ipv4(name, "10.0.0.1", 24, "10.0.0.255")
    mc.bring_up(name)
    mc.bring_up(name + "p")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("block")
    parser.add_argument("source")
    parser.add_argument("--activate")
    parser.add_argument("--tun")
    parser.add_argument("--veth")
    args = parser.parse_args()
    if args.activate:
        activate(args.activate)
    if args.tun:
        tun_traffic(args.tun)
    if args.veth:
        veth(args.veth)
    text = Path(args.block).read_text(encoding="utf-8")
    code = compile(text, args.source, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace = {"__name__": "__main__", "trio": trio, "pt": pt}
    awaiting = eval(code, namespace)  # a coroutine if the block awaits
    if awaiting is not None:

        async def run() -> None:
            await awaiting

        trio.run(run)


if __name__ == "__main__":
    main()

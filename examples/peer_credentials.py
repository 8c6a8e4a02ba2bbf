#!/usr/bin/env python3
"""A local:// server that serves only the users it trusts: peer credentials.

    python examples/peer_credentials.py 'local:///tmp/private.sock?mode=0666'
    python examples/peer_credentials.py local:///%00private --allow-uid 1000

For a local:// connection the kernel tells the server who is at the other
end: ``stream.peer_credentials()`` returns ``(pid, uid, gid)`` as they were
when the client connected (Linux SO_PEERCRED, BSD/macOS getpeereid). The
client cannot forge them, so they are a sound basis for a decision.

This server answers clients running as its own user (and any ``--allow-uid``)
with a greeting and then echoes their lines; anyone else gets one line saying
why not, and the connection is closed before it reads a byte from them.

``?mode=0600`` (only the owner may connect at all) is the first fence; peer
credentials are what to check when the socket must stay reachable by several
users (``mode=0666``, or an abstract name, which has no permissions at all)
but only some of them may be served. Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Collection

import trio

import packeteer_trio as pt

if sys.platform == "win32":  # pragma: no cover
    sys.exit("peer credentials are a local:// (AF_UNIX) feature: POSIX only")


def allowed(credentials: tuple[int, int, int], uids: Collection[int]) -> bool:
    """The decision: is a peer with these ``(pid, uid, gid)`` to be served?"""
    _pid, uid, _gid = credentials
    return uid in uids


def make_handler(uids: Collection[int]) -> Callable[[pt.Stream], Awaitable[None]]:
    """A serve() handler that refuses every peer whose uid is not in *uids*."""

    async def handler(stream: pt.Stream) -> None:
        async with stream:
            if not isinstance(stream, pt.SocketStream):  # no credentials to check
                return
            credentials = stream.peer_credentials()
            pid, uid, _gid = credentials
            if not allowed(credentials, uids):
                print(f"refused pid {pid} (uid {uid})", file=sys.stderr)
                await stream.send_all(b"refused: uid %d is not allowed here\n" % uid)
                return
            print(f"serving pid {pid} (uid {uid})", file=sys.stderr)
            await stream.send_all(b"hello, uid %d\n" % uid)
            try:
                while data := await stream.receive_some():
                    await stream.send_all(data)
            except trio.BrokenResourceError:
                pass

    return handler


async def main(url: str, uids: Collection[int]) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(pt.serve, url, make_handler(uids))
        print(
            f"Listening on {listeners[0].url}; serving uids {sorted(uids)}",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="A local:// server that serves only the users it trusts."
    )
    parser.add_argument("url", help="a local:// path or abstract name")
    parser.add_argument(
        "--allow-uid",
        type=int,
        action="append",
        default=[],
        help="serve this uid too (repeatable); our own uid is always served",
    )
    args = parser.parse_args()
    if pt.URL.parse(args.url).scheme != "local":
        sys.exit("peer_credentials.py: give a local:// URL")
    try:
        trio.run(main, args.url, {os.getuid(), *args.allow_uid})
    except KeyboardInterrupt:
        pass
    except (pt.InvalidURL, OSError) as exc:
        sys.exit(f"peer_credentials.py: {exc}")

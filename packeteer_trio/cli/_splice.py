"""Zero-copy relaying on Linux: socket -> pipe -> socket (or pipe) with os.splice.

``relay`` copies with ``receive_some``/``send_all`` everywhere; where the
kernel can move the pages itself (a socket stream as the source, a socket or
pipe stream as the sink, on Linux) this does the same job without the bytes
ever entering Python: about twice the throughput of the copy loop. Same
shape as the stream hot paths: try the syscall, and only on EAGAIN wait
(the schedule point); a connection that never has to wait checkpoints
after every YIELD_EVERY bytes, so the others and cancellation get their turn.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

import trio
from trio.lowlevel import checkpoint, wait_readable, wait_writable

import packeteer_trio as pt

# Private, as the relay needs them: the stream's own back-off for ENOMEM
# (FIRST_PAUSE, _pause_for_memory) and its descriptors (_scheduler_fds).
from .._fdio import FIRST_PAUSE

# The pipe between the two: 256 KiB where the kernel allows (F_SETPIPE_SZ;
# the default is 64 KiB). Fewer, larger splices amortise the event loop's
# cost per wakeup: with 64 KiB the relay ran at ~0.75x a raw blocking splice
# loop through the same pipe, with 256 KiB at ~1.0x. Pipe pages count against the user's
# fs.pipe-user-pages-soft, so not more.
PIPE_SIZE = 256 * 1024
# A busy connection that never has to wait lets the others (and cancellation)
# in after this many bytes: a checkpoint per splice cost ~8% of throughput.
YIELD_EVERY = 1024 * 1024
# The kernel cannot splice between these: fall back to copying.
_CANNOT_SPLICE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}


def _fds(
    source: pt.SocketStream, sink: pt.SocketStream | pt.PipeStream
) -> tuple[int, int] | None:
    """(source's read fd, sink's write fd) if the kernel can splice them."""
    try:
        in_fd, out_fd = source._scheduler_fds()[0], sink._scheduler_fds()[1]
    except trio.ClosedResourceError:
        return None
    if in_fd is None or out_fd is None:
        return None
    return in_fd, out_fd


async def splice_copy(
    source: pt.Stream, sink: pt.Stream, count: Callable[[int], None]
) -> bool:
    """Move *source* to *sink* until end of file, then ``sink.send_eof()``.

    Calls ``count(n)`` for every *n* bytes delivered. Returns False, having
    moved nothing, where splicing does not apply (not Linux, other stream
    kinds, a kernel that refuses): the caller copies instead. Errors are the
    streams' own (``BrokenResourceError``, ``ClosedResourceError``).
    Cancelled while the sink is full, what sits in the pipe is dropped: the
    relay is closing both connections then anyway.
    """
    if sys.platform != "linux":
        return False
    import fcntl

    if not isinstance(source, pt.SocketStream) or not isinstance(
        sink, (pt.SocketStream, pt.PipeStream)
    ):
        return False  # FIFO readers, TLS, user streams: their own rules
    fds = _fds(source, sink)
    if fds is None:
        return False
    in_fd, out_fd = fds
    flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    moved, pause = False, FIRST_PAUSE
    unyielded = 0  # bytes moved since this task last let others run
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            chunk = fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # over fs.pipe-max-size or the user's pipe pages: as is
            chunk = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        while True:
            # The pipe is empty here, so EAGAIN means the source has nothing.
            try:
                pending = os.splice(in_fd, write_end, chunk, flags=flags)
            except BlockingIOError:
                await wait_readable(in_fd)
                unyielded = 0
                continue
            except OSError as exc:
                if not moved and exc.errno in _CANNOT_SPLICE:
                    return False
                # ENOMEM: the kernel is short of memory: pause, try again.
                pause = await source._pause_for_memory(exc, pause)
                continue
            if not pending:
                break
            moved = True
            while pending:
                try:
                    sent = os.splice(read_end, out_fd, pending, flags=flags)
                except BlockingIOError:  # the sink is full
                    await wait_writable(out_fd)
                    unyielded = 0
                    continue
                except OSError as exc:
                    pause = await sink._pause_for_memory(exc, pause)
                    continue
                pending -= sent
                unyielded += sent
                count(sent)
            if unyielded >= YIELD_EVERY:
                await checkpoint()
                unyielded = 0
    finally:
        os.close(read_end)
        os.close(write_end)
    await sink.send_eof()
    return True

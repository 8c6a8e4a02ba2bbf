"""The anyio face's datagram sends on asyncio loops with ``add_reader``: direct.

The read-ahead datagram sockets (:mod:`._datagram_readahead`) send with one
``sendto`` in the caller's task, behind the cooperative budget of
:mod:`._readahead` (a yield once per 16 small sends that did not wait, before
anything moves) instead of anyio's checkpoint pair around every send. A full
buffer first lets the loop run once and tries again (a receiver in the same
loop draining an AF_UNIX peer's queue of 10 costs less than registering for
writability), then waits in the shared slow path of
:mod:`.._datagram_core` (room, ENOBUFS/ENOMEM retries, errors naming the URL).
A send is cancelled only before its datagram left.
"""

from __future__ import annotations

import socket
from typing import Any

from .._datagram_core import Data, DatagramCore
from .._endpoints import PEER
from .._url import URL
from ._readahead import BUDGET, OP_COST, yield_now


class DirectSend(DatagramCore):
    """``send_to`` and ``send`` without the checkpoint pair."""

    _budget: int  # the read-ahead socket's (:mod:`._datagram_readahead`)

    async def _send_to(self, data: Data, address: str | URL) -> None:
        conflict = self._send_conflict  # inline: see ConflictDetector
        if conflict.held:
            raise conflict.busy()
        conflict.held = True
        try:
            self._budget -= OP_COST + len(data)
            if self._budget <= 0:
                self._budget = BUDGET
                await yield_now()
            if self._closed:
                raise self._closed_error()
            entry = self._by_id.get(id(address))
            if entry is not None and entry[0] is address:
                target = entry[1]
            else:
                target = await self._target(address)
            try:
                if target is PEER:
                    self._send_sock.send(data)
                else:
                    self._sock.sendto(data, target)
            except OSError as exc:
                if target is PEER:
                    sock, fd = self._send_sock, self._send_fd
                else:
                    sock, fd = self._sock, self._fd
                await self._send_again(
                    sock, fd, data, target, exc, f"send_to {address}"
                )
        finally:
            conflict.held = False

    async def _send(self, data: Data) -> None:
        conflict = self._send_conflict  # inline: see ConflictDetector
        if conflict.held:
            raise conflict.busy()
        conflict.held = True
        try:
            self._budget -= OP_COST + len(data)
            if self._budget <= 0:
                self._budget = BUDGET
                await yield_now()
            if self._closed:
                raise self._closed_error()
            try:
                self._send_sock.send(data)
            except OSError as exc:
                sock, fd = self._send_sock, self._send_fd
                await self._send_again(sock, fd, data, PEER, exc, "send")
        finally:
            conflict.held = False

    async def _send_again(
        self,
        sock: socket.socket,
        fd: int,
        data: Data,
        target: Any,
        exc: OSError,
        action: str,
    ) -> None:
        # A full buffer: first let the loop run once (a receiver in this
        # loop, say, draining an AF_UNIX peer's queue of 10), which costs
        # less than registering for writability, then the shared slow path.
        if isinstance(exc, BlockingIOError):
            await yield_now()
            if self._closed:
                raise self._closed_error()
            try:
                if target is PEER:
                    sock.send(data)
                else:
                    sock.sendto(data, target)
                return
            except OSError as again:
                exc = again
        await self._send_slow(sock, fd, data, target, exc, 0, action)

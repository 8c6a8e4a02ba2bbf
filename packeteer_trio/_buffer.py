"""``Buffer``: what ``receive_into`` fills, as a type checker sees it.

On Python 3.12+ this is :class:`collections.abc.Buffer` (PEP 688). Before,
the same structural type as a Protocol: typeshed gives every buffer type
(bytearray, memoryview, array.array, mmap, numpy arrays) ``__buffer__`` on
all versions, so checkers accept exactly what 3.12's Buffer accepts, without
``typing_extensions`` at run time. As with the standard library's
``socket.recv_into``, the type cannot say *writable*: a read-only buffer
(bytes) passes the checker and fails when written, with TypeError.
"""

from __future__ import annotations

import sys

__all__ = ["Buffer"]

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing import Protocol

    class Buffer(Protocol):
        """An object exporting the buffer protocol (PEP 688's Buffer)."""

        def __buffer__(self, flags: int, /) -> memoryview: ...

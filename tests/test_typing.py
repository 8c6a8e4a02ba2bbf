"""The typed user programs of tests/typed/ run: what they narrow to is true.

``mypy --strict`` and pyright strict check those programs in ``.ci/run``
(what the declared types promise); here they run against loopback and
temporary AF_UNIX paths, so every ``isinstance`` they rely on holds.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import trio

from .typed import anyio_program, http_program, trio_program


def test_trio_program(tmp_path: Path) -> None:
    trio.run(trio_program.main, tmp_path)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_program(tmp_path: Path, backend: str) -> None:
    anyio.run(anyio_program.main, tmp_path, backend=backend)


def test_http_program(tmp_path: Path) -> None:
    trio.run(http_program.main, tmp_path)

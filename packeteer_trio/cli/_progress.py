"""Progress on stderr while bench and demo run, only when stderr is a terminal.

With the optional extra ``packeteer-trio[progress]`` (tqdm) it is tqdm's bar;
without it a plain one-line counter redrawn in place. When stderr is not a
terminal (a pipe, a file, CI) nothing is drawn: only the plain log lines.
The measured loops never touch the bar: they bump a counter, and a task
redraws from it every REFRESH seconds.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TextIO

import trio

REFRESH = 0.1  # seconds between redraws


class Bar:
    """No bar (stderr is no terminal): notes are plain lines."""

    draws = False

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def show(self, done: float, total: float, label: str, unit: str) -> None:
        pass

    def note(self, message: str) -> None:
        print(message, file=self._stream, flush=True)

    def close(self) -> None:
        pass


class TextBar(Bar):
    """The fallback without tqdm: ``label: 40% (4000/10000 unit)``, in place."""

    draws = True

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._line = ""

    def show(self, done: float, total: float, label: str, unit: str) -> None:
        percent = 100 * done / total if total else 100.0
        self._line = f"{label}: {percent:3.0f}% ({done:.0f}/{total:.0f} {unit})"
        self._stream.write(f"\r\x1b[K{self._line}")
        self._stream.flush()

    def note(self, message: str) -> None:
        self._stream.write(f"\r\x1b[K{message}\n{self._line}")
        self._stream.flush()

    def close(self) -> None:
        self._stream.write("\r\x1b[K")
        self._stream.flush()


class TqdmBar(Bar):
    """tqdm's bar (the ``[progress]`` extra)."""

    draws = True

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        import tqdm

        self._tqdm = tqdm
        self._bar = tqdm.tqdm(file=stream, leave=False, total=0)

    def show(self, done: float, total: float, label: str, unit: str) -> None:
        bar = self._bar
        if bar.total != total or bar.desc != label:
            bar.reset(total=total)
            bar.set_description_str(label, refresh=False)
            bar.unit = unit
            bar.unit_scale = unit == "B"  # 16.0MB, but 5000 round trips
        bar.n = done
        bar.refresh()

    def note(self, message: str) -> None:
        self._tqdm.tqdm.write(message, file=self._stream)

    def close(self) -> None:
        self._bar.close()


def open_bar(stream: TextIO | None = None) -> Bar:
    """The best bar this stderr can show (see the module's docstring)."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return Bar(stream)
    try:
        return TqdmBar(stream)
    except ImportError:
        return TextBar(stream)


@asynccontextmanager
async def tracking(
    bar: Bar, label: str, total: float, unit: str, done: Callable[[], float]
) -> AsyncIterator[None]:
    """Redraw *bar* from ``done()`` while the block runs (no-op without a bar)."""
    if not bar.draws:
        yield
        return

    async def redraw() -> None:
        while True:
            bar.show(done(), total, label, unit)
            await trio.sleep(REFRESH)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(redraw)
        yield
        bar.show(done(), total, label, unit)
        nursery.cancel_scope.cancel()

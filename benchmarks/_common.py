"""What every comparison shares: alternating rounds, medians, rows of the table.

A comparison runs each contender once per round, rotating the order from
round to round (A B, B A, ...), so that a neighbour's load or a CPU clock
change hits every contender alike; the table reports the median of the
rounds and the ratio of those medians (ours / theirs).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager


@dataclasses.dataclass(frozen=True)
class Config:
    """How hard to run: *rounds* alternating rounds, work scaled by *scale*."""

    rounds: int = 7
    scale: float = 1.0
    verbose: bool = False

    def work(self, amount: int, minimum: int = 1) -> int:
        """*amount* units of work, scaled (never below *minimum*)."""
        return max(minimum, int(amount * self.scale))


@dataclasses.dataclass
class Row:
    """One line of the table: a measurement of ours against one peer."""

    group: str
    name: str
    unit: str
    ours_label: str
    theirs_label: str
    ours: list[float]
    theirs: list[float]
    target: float | None = None  # the ratio the issue asks for, if any
    note: str = ""
    #: For costs (CPU per request): the ratio is then peer / ours, so that
    #: above 1 still means ours is better.
    lower_is_better: bool = False

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def theirs_median(self) -> float:
        return statistics.median(self.theirs)

    def _ratio(self, ours: float, theirs: float) -> float:
        if self.lower_is_better:
            ours, theirs = theirs, ours
        return ours / theirs if theirs else float("nan")

    @property
    def ratio(self) -> float:
        """Ours / peer of the medians (peer / ours for costs): > 1 is better."""
        return self._ratio(self.ours_median, self.theirs_median)

    @property
    def spread(self) -> tuple[float, float]:
        """The lowest and highest ratio of a single round (same round, both)."""
        pairs = zip(self.ours, self.theirs, strict=True)
        ratios = [self._ratio(ours, theirs) for ours, theirs in pairs]
        return (min(ratios), max(ratios)) if ratios else (float("nan"),) * 2

    @property
    def verdict(self) -> str:
        """ "met", "within noise" or "MISSED" for a row with a target.

        Within noise: the ratio of the medians is short of the target by
        less than 3% and at least one round reached it. Rows that compare
        the very same code (our anyio streams on asyncio *are* anyio's)
        land there about half of the time.
        """
        if self.target is None:
            return ""
        if self.ratio >= self.target:
            return "met"
        if self.ratio >= 0.97 * self.target and self.spread[1] >= self.target:
            return "within noise"
        return "MISSED"


def measure(
    config: Config,
    contenders: Mapping[str, Callable[[], float]],
    *,
    label: str = "",
) -> dict[str, list[float]]:
    """Run every contender once per round, rotating the order; all the values.

    Each contender is a plain callable returning one figure (higher is
    better); it sets up and tears down on its own, timing only the work.
    """
    names = list(contenders)
    results: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(config.rounds):
        shift = round_number % len(names)
        order = names[shift:] + names[:shift]
        if round_number % 2:
            order.reverse()
        for name in order:
            gc.collect()
            results[name].append(contenders[name]())
        if config.verbose:
            figures = ", ".join(f"{n}={results[n][-1]:,.0f}" for n in names)
            progress(f"  {label} round {round_number + 1}: {figures}")
    return results


def rows_from(
    group: str,
    name: str,
    unit: str,
    results: Mapping[str, list[float]],
    ours: str,
    pairs: Sequence[tuple[str, float | None]],
    note: str = "",
    *,
    lower_is_better: bool = False,
) -> list[Row]:
    """One row per ``(theirs, target)`` pair, all against the contender *ours*."""
    return [
        Row(
            group,
            name,
            unit,
            ours,
            theirs,
            results[ours],
            results[theirs],
            target,
            note,
            lower_is_better,
        )
        for theirs, target in pairs
    ]


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Timer:
    """A perf_counter stopwatch: ``with Timer() as t: ...; t.seconds``."""

    seconds = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self._start


@contextmanager
def temp_dir() -> Iterator[str]:
    """A fresh private directory for socket files and FIFOs, removed after."""
    with tempfile.TemporaryDirectory(prefix="packeteer-bench-") as path:
        yield path


def temp_path(directory: str, name: str) -> str:
    return os.path.join(directory, name)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table.

    *ratio* is the ratio of the medians; *per round* the lowest and highest
    ratio within one round, a measure of the noise.
    """
    lines = [
        "| group | benchmark | ours | median | peer | median | ratio "
        "| per round | target |",
        "|---|---|---|---:|---|---:|---:|---|---|",
    ]
    for row in rows:
        target = "" if row.target is None else f"≥ {row.target:.2f}x {row.verdict}"
        low, high = row.spread
        lines.append(
            f"| {row.group} | {row.name} | {row.ours_label} | "
            f"{_figure(row.ours_median)} {row.unit} | {row.theirs_label} | "
            f"{_figure(row.theirs_median)} {row.unit} | {row.ratio:.2f}x | "
            f"{low:.2f}-{high:.2f} | {target} |"
        )
    return "\n".join(lines)


def _figure(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"

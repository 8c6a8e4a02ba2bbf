"""The demo's cases and their results: a table, or one JSON object.

The JSON object (``--json``, documented in docs/cli.md)::

    {"command": "demo", "version": "…", "seconds": …,
     "passed": …, "failed": …, "skipped": …,
     "cases": [{"scheme": "tcp4", "behaviour": "stream", "url": "…",
                "result": "ok" | "failed" | "skipped", "reason": "…" or null,
                "round_trips": …, "mb_per_s": …, "datagrams_per_s": …,
                "us_per_round_trip": …}, …]}

A measure a case does not have (datagrams/s of a stream, anything of a
skipped case) is null.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable

import packeteer_trio as pt

from .._units import US
from ._stream_cases import Measures


@dataclasses.dataclass
class Case:
    scheme: str  # as shown in the table, e.g. "local:abstract"
    behaviour: str
    run: Callable[[Measures], Awaitable[None]] | None
    skip: str = ""  # why this host cannot run it
    status: str = "OK"
    measures: Measures = dataclasses.field(default_factory=Measures)

    def selected(self, only: list[str]) -> bool:
        # "udp" picks udp4 and udp6, "local" every local row, "stream" all streams.
        return not only or any(
            self.scheme.startswith(name) or name == self.behaviour for name in only
        )

    @property
    def result(self) -> str:
        return self.status.split(":")[0].lower()


def _counts(cases: list[Case]) -> tuple[int, int, int]:
    passed = sum(case.result == "ok" for case in cases)
    skipped = sum(case.result == "skipped" for case in cases)
    return passed, len(cases) - passed - skipped, skipped


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(cases: list[Case], seconds: float) -> None:
    header: tuple[str, ...] = (
        "scheme",
        "behaviour",
        "round trips",
        "MB/s",
        "datagrams/s",
    )
    header += (f"{US}/round trip", "result")
    rows: list[tuple[str, ...]] = [header]
    for case in cases:
        m = case.measures
        rows.append(
            (
                case.scheme,
                case.behaviour,
                str(m.round_trips) if m.round_trips else "-",
                _number(m.mb_per_s, 1),
                _number(m.datagrams_per_s, 0),
                _number(m.us_per_round_trip, 1),
                case.status,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        print("  ".join([*cells, row[-1]]))
    passed, failed, skipped = _counts(cases)
    print(f"{passed} passed, {failed} failed, {skipped} skipped in {seconds:.1f} s")
    sys.stdout.flush()


def print_json(cases: list[Case], seconds: float) -> None:
    passed, failed, skipped = _counts(cases)
    rows = []
    for case in cases:
        m = case.measures
        _, _, reason = case.status.partition(": ")
        rows.append(
            {
                "scheme": case.scheme,
                "behaviour": case.behaviour,
                "url": m.url or None,
                "result": case.result,
                "reason": reason or None,
                "round_trips": m.round_trips or None,
                "mb_per_s": m.mb_per_s,
                "datagrams_per_s": m.datagrams_per_s,
                "us_per_round_trip": m.us_per_round_trip,
            }
        )
    result = {
        "command": "demo",
        "version": pt.__version__,
        "seconds": seconds,
        "passed": passed,
        "failed": failed,
        "skipped": skipped,
        "cases": rows,
    }
    print(json.dumps(result), flush=True)

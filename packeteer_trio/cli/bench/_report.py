"""bench's results: lines of text as each phase ends, or one JSON object.

The JSON object (``--json``, documented in docs/cli.md)::

    {"command": "bench", "version": "…", "url": "…", "behaviour": "stream",
     "connections": 1,
     "throughput": {"bytes": …, "seconds": …, "mb_per_s": …} or null,
     "round_trips": {"count": …, "size": …, "seconds": …, "per_s": …,
                     "p50_us": …, "p99_us": …, "mean_us": …}}

On datagram URLs ``throughput`` also has ``datagrams``, ``size`` and
``datagrams_per_s``.
"""

from __future__ import annotations

import json
from typing import Any

import packeteer_trio as pt

from .._units import US, mb_per_s


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[
        min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    ]


class Report:
    """Collects the phases; prints text at once, or JSON at :meth:`finish`."""

    def __init__(
        self, url: pt.URL, behaviour: str, connections: int, *, as_json: bool
    ) -> None:
        self.as_json = as_json
        self.result: dict[str, Any] = {
            "command": "bench",
            "version": pt.__version__,
            "url": str(url),
            "behaviour": behaviour,
            "connections": connections,
            "throughput": None,
            "round_trips": None,
        }
        noun = "connection(s)" if behaviour == "stream" else "channel(s), datagrams"
        self._say(f"bench {url}: {connections} {noun}")

    def _say(self, line: str) -> None:
        if not self.as_json:
            print(line, flush=True)

    def stream_throughput(self, nbytes: int, seconds: float) -> None:
        rate = mb_per_s(nbytes, seconds)
        self.result["throughput"] = {
            "bytes": nbytes,
            "seconds": seconds,
            "mb_per_s": rate,
        }
        self._say(
            f"throughput: {nbytes / 1e6:.1f} MB each way in {seconds:.3f} s, "
            f"{rate:.1f} MB/s"
        )

    def datagram_throughput(self, datagrams: int, size: int, seconds: float) -> None:
        rate = mb_per_s(datagrams * size, seconds)
        per_s = datagrams / seconds if seconds > 0 else 0.0
        self.result["throughput"] = {
            "bytes": datagrams * size,
            "seconds": seconds,
            "mb_per_s": rate,
            "datagrams": datagrams,
            "size": size,
            "datagrams_per_s": per_s,
        }
        self._say(
            f"throughput: {datagrams} datagrams x {size} B in {seconds:.3f} s, "
            f"{per_s:.0f} datagrams/s, {rate:.1f} MB/s"
        )

    def round_trips(self, times_ns: list[int], size: int, seconds: float) -> None:
        micros = sorted(t / 1000 for t in times_ns)
        count = len(micros)
        p50, p99 = percentile(micros, 0.5), percentile(micros, 0.99)
        mean = sum(micros) / count
        per_s = count / seconds if seconds > 0 else 0.0
        self.result["round_trips"] = {
            "count": count,
            "size": size,
            "seconds": seconds,
            "per_s": per_s,
            "p50_us": p50,
            "p99_us": p99,
            "mean_us": mean,
        }
        self._say(
            f"round trips: {count} x {size} B in {seconds:.3f} s, {per_s:.0f}/s; "
            f"p50 {p50:.1f} {US}, p99 {p99:.1f} {US}, mean {mean:.1f} {US}"
        )

    def finish(self) -> None:
        if self.as_json:
            print(json.dumps(self.result), flush=True)

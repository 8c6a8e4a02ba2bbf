"""The benchmark runner works and its table says what it means (no timing checks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._common import Row, format_table

ROOT = Path(__file__).resolve().parent.parent


def row(
    ours: list[float],
    theirs: list[float],
    target: float | None = None,
    lower_is_better: bool = False,
) -> Row:
    return Row("g", "n", "u", "ours", "peer", ours, theirs, target, "", lower_is_better)


def test_ratio_is_of_the_medians_and_costs_are_inverted() -> None:
    assert row([1, 2, 30], [1, 1, 1]).ratio == 2
    assert row([2, 2, 2], [4, 4, 4], lower_is_better=True).ratio == 2
    assert row([1, 3], [1, 1]).spread == (1, 3)


def test_verdicts() -> None:
    assert row([2], [1], target=1.25).verdict == "met"
    assert row([0.98, 1.02, 0.98], [1, 1, 1], target=1.0).verdict == "within noise"
    assert row([0.98, 0.99, 0.98], [1, 1, 1], target=1.0).verdict == "MISSED"
    assert row([0.5], [1], target=1.0).verdict == "MISSED"
    assert row([0.5], [1]).verdict == ""


def test_table_has_a_line_per_row() -> None:
    table = format_table([row([2], [1], target=1.0), row([1], [1])])
    assert len(table.splitlines()) == 4
    assert "2.00x" in table and "met" in table


@pytest.mark.skipif(sys.platform == "win32", reason="the benchmarks are POSIX-only")
def test_runner_smoke() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "scheduler", "pipes", "sendfile"),
            *("--rounds", "1", "--scale", "0.01"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| scheduler |" in result.stdout and "| pipes |" in result.stdout
    if sys.platform == "linux":  # the sendfile comparison's sink splices
        assert "| sendfile |" in result.stdout


def test_runner_rejects_unknown_names() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "nonsense"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown benchmark" in result.stderr


@pytest.mark.linux_only(reason="the workers benchmark reads /proc and uses epoll")
def test_workers_benchmark_smoke() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "workers"),
            *("--rounds", "1", "--scale", "0.1"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "| workers |" in line]
    assert len(rows) == 6, result.stdout
    assert "2 workers, reuseport" in rows[0] and "1 worker" in rows[0]

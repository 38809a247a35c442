"""The paper's comparison of methods on one task: test score over seeds, and relative improvement
over the base model and over grid search. Pure functions of the runs' summaries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

GRID = "grid"


@dataclass(frozen=True)
class RunResult:
    """What one finished (or unfinished) run contributes to its task's comparison."""

    task: str
    method: str
    seed: int
    test_score: float | None
    """The best node's test score; None while the run has not finished."""
    base_test_score: float | None
    relative_improvement: float | None
    """test / base test - 1, as the run's summary reports it."""


@dataclass(frozen=True)
class MethodRow:
    method: str
    runs: int
    seeds: tuple[int, ...]
    scored: int
    """Runs with a test score (finished ones); the statistics below are over these."""
    test_mean: float | None
    test_std: float | None
    """Sample standard deviation over seeds; None with fewer than 2 scored runs."""
    base_test_mean: float | None
    vs_base: float | None
    """Mean over seeds of each run's relative improvement over its base model."""
    vs_grid: float | None
    """test_mean / (the grid method's mean test score on this task) - 1; None without a grid run."""


def mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def sample_std(xs: Sequence[float]) -> float | None:
    """The spread over seeds (n - 1 in the denominator); None for fewer than two values."""
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def compare(results: Sequence[RunResult]) -> dict[str, list[MethodRow]]:
    """One table per task (in the order the tasks first appear), one row per method (likewise)."""
    by_task: dict[str, list[RunResult]] = {}
    for r in results:
        by_task.setdefault(r.task, []).append(r)
    return {task: _task_rows(rs) for task, rs in by_task.items()}


def _task_rows(results: Sequence[RunResult]) -> list[MethodRow]:
    by_method: dict[str, list[RunResult]] = {}
    for r in results:
        by_method.setdefault(r.method, []).append(r)
    grid_mean = mean(_tests(by_method.get(GRID, [])))
    rows = []
    for method, rs in by_method.items():
        tests = _tests(rs)
        test_mean = mean(tests)
        rows.append(MethodRow(
            method=method, runs=len(rs), seeds=tuple(r.seed for r in rs), scored=len(tests),
            test_mean=test_mean, test_std=sample_std(tests),
            base_test_mean=mean([r.base_test_score for r in rs if r.base_test_score is not None]),
            vs_base=mean([r.relative_improvement for r in rs if r.relative_improvement is not None]),
            vs_grid=(test_mean / grid_mean - 1) if test_mean is not None and grid_mean else None))
    return rows


def _tests(results: Sequence[RunResult]) -> list[float]:
    return [r.test_score for r in results if r.test_score is not None]

"""95% percentile-bootstrap intervals over problems for pass@1, and paired intervals for differences.

Each problem contributes one value in [0, 1] per method (the probability that the method's pick
passes). A replicate draws as many problems as there are, with replacement, from a generator seeded
by the caller (so intervals are deterministic), and takes the mean. A paired interval resamples the
same problems for both methods and takes the mean difference, so the problems' shared difficulty
cancels: that is the interval to read for "judge beats random by 1-2 problems out of 131".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LEVEL = 0.95


def _draws(n: int, reps: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(reps, n))


def _quantiles(stats: np.ndarray, level: float) -> list[float]:
    tail = (1.0 - level) / 2
    return [float(np.quantile(stats, tail)), float(np.quantile(stats, 1.0 - tail))]


def bootstrap_mean(values: Sequence[float], seed: int, reps: int = 2000, level: float = LEVEL) -> list[float] | None:
    """[low, high] of the mean of `values` (one per problem); None for no values."""
    if not len(values):
        return None
    x = np.asarray(values, dtype=np.float64)
    return _quantiles(x[_draws(len(x), reps, seed)].mean(axis=1), level)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], seed: int, reps: int = 2000,
                     level: float = LEVEL) -> list[float] | None:
    """[low, high] of mean(a) - mean(b), resampling the same problems for both; None for no values."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} and {len(b)}")
    if not len(a):
        return None
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return _quantiles(d[_draws(len(d), reps, seed)].mean(axis=1), level)


def percent(interval: list[float] | None, digits: int = 4) -> list[float] | None:
    """An interval of proportions in percent, rounded like the pass@1 figures."""
    return None if interval is None else [round(100.0 * v, digits) for v in interval]

"""Exact expectations of selection methods over a candidate pool (no sampling noise).

A pool is described by the verdicts of its candidates: `passed` (hidden + public tests) and
`public_passed` (public tests alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    return 1.0 - comb(n - c, k) / comb(n, k)


def random_expectation(passed: Sequence[bool]) -> float:
    """Pick one candidate uniformly: the mean pass rate."""
    return sum(map(bool, passed)) / len(passed)


def oracle(passed: Sequence[bool]) -> float:
    """1 when any candidate passes."""
    return float(any(passed))


def public_tests_expectation(passed: Sequence[bool], public_passed: Sequence[bool]) -> float:
    """Pick uniformly among the candidates that pass the public tests, or among all when none does."""
    keep = [p for p, pub in zip(passed, public_passed, strict=True) if pub]
    return random_expectation(keep if keep else passed)


def subset_oracle(n_total: int, n_correct: int, size: int) -> float:
    """Oracle over a uniform random subset of `size` of the pool: pass@size."""
    return pass_at_k(n_total, n_correct, size)


def subset_public_tests(passed: Sequence[bool], public_passed: Sequence[bool], size: int) -> float:
    """Exact expectation of the public-tests method on a uniform random subset of `size` candidates.

    With A = public-pass & pass, B = public-pass & fail, C = public-fail & pass, D = public-fail & fail:
    given that the subset holds k > 0 public passers, they are a uniform sample of the A+B, so the pick
    passes with probability A/(A+B); with none (probability C(C+D, size)/C(N, size)) the pick is
    uniform over a uniform subset of the C+D, passing with probability C/(C+D).
    """
    n = len(passed)
    a = sum(1 for p, q in zip(passed, public_passed, strict=True) if p and q)
    b = sum(1 for p, q in zip(passed, public_passed, strict=True) if not p and q)
    c = sum(1 for p, q in zip(passed, public_passed, strict=True) if p and not q)
    d = n - a - b - c
    p_none = comb(c + d, size) / comb(n, size)
    with_public = a / (a + b) if a + b else 0.0
    without = c / (c + d) if c + d else 0.0
    return (1.0 - p_none) * with_public + p_none * without

"""The exact law of the paper's Best-of-N vote for a judge with known answer probabilities.

The paper's tally (section 3): R rounds; each round draws an ordered pair (a, b), a != b, uniformly
among the N(N-1) ordered pairs (independently across rounds); the judge picks position 1 (a gets the
vote), position 2 (b gets it) or gives no valid answer (no vote); the candidate with the most votes
wins and ties are broken uniformly at random. Rounds are i.i.d., so the vote counts are multinomial
with per-round probabilities `round_probabilities`, and the winner's law follows by enumerating
every count vector. No sampling: these are the reference values the tests and the smol experiment
compare the implementation with (daj.judge.voting).

`q[a][b]` = P(the judge picks position 1 | a shown first, b second), given a valid answer;
`p_none[a][b]` = P(no valid answer) (default 0). Diagonal entries are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from math import factorial

Table = Sequence[Sequence[float | None]]


def round_probabilities(q: Table, p_none: Table | None = None) -> tuple[list[float], float]:
    """(P(candidate i gets the vote of one round) for each i, P(no vote in a round))."""
    n = len(q)
    if n < 2:
        raise ValueError("a vote needs at least two candidates")
    w = 1.0 / (n * (n - 1))
    pi, none = [0.0] * n, 0.0
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            z = float(p_none[a][b]) if p_none is not None else 0.0
            none += w * z
            pi[a] += w * (1 - z) * float(q[a][b])
            pi[b] += w * (1 - z) * (1 - float(q[a][b]))
    return pi, none


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every tuple of `parts` non-negative integers summing to at most `total`."""
    if parts == 0:
        yield ()
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def winner_distribution(q: Table, rounds: int, p_none: Table | None = None) -> list[float]:
    """P(candidate i wins) under the paper's tally (uniform tie-break among the most-voted)."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    pi, none = round_probabilities(q, p_none)
    n = len(pi)
    out = [0.0] * n
    for counts in _compositions(rounds, n):
        rest = rounds - sum(counts)
        p = float(factorial(rounds)) / factorial(rest) * none ** rest
        for c, pr in zip(counts, pi, strict=True):
            p = p / factorial(c) * pr ** c
        if p == 0.0:
            continue
        best = max(counts)
        tied = [i for i, c in enumerate(counts) if c == best]
        for i in tied:
            out[i] += p / len(tied)
    return out


def expected_pass(passed: Sequence[bool], q: Table, rounds: int, p_none: Table | None = None) -> float:
    """Exact expected verdict of the vote's winner (a one-candidate pool is its own pick)."""
    if len(passed) == 1:
        return float(passed[0])
    dist = winner_distribution(q, rounds, p_none)
    return sum(p for p, ok in zip(dist, passed, strict=True) if ok)


def hybrid_expected_pass(passed: Sequence[bool], public_passed: Sequence[bool], q: Table, rounds: int,
                         p_none: Table | None = None) -> float:
    """The hybrid method: the vote among the candidates that pass the public tests (all when none does)."""
    keep = [i for i, pub in enumerate(public_passed) if pub] or list(range(len(passed)))
    sub_q = [[q[a][b] for b in keep] for a in keep]
    sub_none = [[p_none[a][b] for b in keep] for a in keep] if p_none is not None else None
    return expected_pass([passed[i] for i in keep], sub_q, rounds, sub_none)

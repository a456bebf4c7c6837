"""Pairwise voting: pick one of N candidates with R judge rounds.

The paper's tally (the default): each round draws an ordered pair of two different candidate indices
uniformly (independently across rounds, so a pair can repeat) and shows them to the judge as
Candidate 1 and Candidate 2; the chosen one gets one vote. A round whose response has no valid
selection gives no vote. The candidate with the most votes wins; ties are broken uniformly at random.
Every round is a judge call. Its exact law is in daj.eval.exact_vote.

Shared votes (`share_votes=True`, params bon.share_votes; not the paper's): identical candidates (same
normalised code) form one group that shares its votes: a vote for one member counts for the whole
group, a round that draws two members of the same group gives the group its vote without a judge call
(there is nothing to compare), the group with the most votes wins and its smallest candidate index
is returned. Every random choice comes from the caller's seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from daj.data.measures import canonical_code
from daj.hashing import stable_seed as stable_seed  # noqa: F401 - re-export for callers

PairJudge = Callable[[list[tuple[int, int]]], list[int | None]]


def identity_groups(codes: Sequence[str]) -> list[int]:
    """group[i] = the smallest index whose code is identical (normalised) to candidate i's."""
    first: dict[str, int] = {}
    return [first.setdefault(canonical_code(c), i) for i, c in enumerate(codes)]


def draw_pairs(n_candidates: int, rounds: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """`rounds` ordered pairs (a, b), a != b, each uniform over the N(N-1) ordered pairs."""
    pairs = []
    for _ in range(rounds):
        a = int(rng.integers(n_candidates))
        b = int(rng.integers(n_candidates - 1))
        pairs.append((a, b + (b >= a)))
    return pairs


@dataclass
class VoteResult:
    """The outcome of a vote: winner index, per-candidate votes (shared within groups), round log."""

    winner: int
    votes: list[int]
    pairs: list[tuple[int, int]]
    round_winners: list[int | None]  # candidate index credited in each round (None: no vote)
    judged: int  # rounds that needed a judge call
    groups: list[int] | None = None  # the tally's groups (identity: one per candidate)

    def after(self, rounds: int, rng: np.random.Generator) -> tuple[int, list[int]]:
        """(winner, votes) using only the first `rounds` rounds (for rounds-scaling curves)."""
        groups = self.groups if self.groups is not None else list(range(len(self.votes)))
        return tally(self.round_winners[:rounds], groups, rng)


def tally(round_winners: Sequence[int | None], groups: Sequence[int],
          rng: np.random.Generator) -> tuple[int, list[int]]:
    """Count group votes, break ties at random; return (winner's smallest index, per-candidate votes)."""
    group_votes: dict[int, int] = {g: 0 for g in groups}
    for w in round_winners:
        if w is not None:
            group_votes[groups[w]] += 1
    best = max(group_votes.values())
    tied = sorted(g for g, v in group_votes.items() if v == best)
    winner = tied[int(rng.integers(len(tied)))] if len(tied) > 1 else tied[0]
    return winner, [group_votes[groups[i]] for i in range(len(groups))]


def pairwise_vote(codes: Sequence[str], rounds: int, judge: PairJudge, rng: np.random.Generator,
                  groups: Sequence[int] | None = None, share_votes: bool = False) -> VoteResult:
    """Run R rounds of pairwise voting over `codes`; `judge` gets all needed pairs in one batch and
    returns, per pair, the selected position (1 or 2) or None.

    share_votes=False is the paper's tally (every candidate on its own, every round judged);
    share_votes=True shares votes among identical candidates (`groups`, default identity_groups)."""
    n = len(codes)
    if n == 0:
        raise ValueError("no candidates to vote on")
    if share_votes:
        groups = list(groups) if groups is not None else identity_groups(codes)
    elif groups is not None and list(groups) != list(range(n)):
        raise ValueError("groups are only used with share_votes=True")
    else:
        groups = list(range(n))
    if n == 1:
        return VoteResult(0, [0], [], [], 0, groups)
    pairs = draw_pairs(n, rounds, rng)
    need = [k for k, (a, b) in enumerate(pairs) if groups[a] != groups[b]]
    answers = judge([pairs[k] for k in need]) if need else []
    if len(answers) != len(need):
        raise RuntimeError(f"judge answered {len(answers)} of {len(need)} pairs")
    round_winners: list[int | None] = [pairs[k][0] for k in range(rounds)]  # same-group rounds
    for k, answer in zip(need, answers, strict=True):
        a, b = pairs[k]
        round_winners[k] = a if answer == 1 else b if answer == 2 else None
    winner, votes = tally(round_winners, groups, rng)
    return VoteResult(winner, votes, pairs, round_winners, len(need), groups)

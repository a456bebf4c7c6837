"""Pairwise voting against its exact distribution, for a judge with a known preference table.

The reference behaviour is the paper's tally (section 3): R rounds, each drawing an ordered pair
uniformly with replacement, one vote per round, the argmax wins, ties broken at random. Shared votes
among identical candidates (share_votes=True) is an option and is checked separately.
"""

from __future__ import annotations

import itertools
from collections import Counter
from fractions import Fraction
from math import factorial

import numpy as np
import pytest
import torch

import daj.judge.voting as voting
from daj.data.measures import canonical_code
from daj.eval.exact_vote import expected_pass, hybrid_expected_pass, winner_distribution
from daj.judge.voting import draw_pairs, identity_groups, pairwise_vote

# P1[a][b]: probability that the judge selects position 1 when candidate a is shown first and b second.
# Deliberately position-biased (P1[a][b] + P1[b][a] != 1) and with a 10% chance of no valid answer.
P1 = [[None, 0.7, 0.6, 0.5],
      [0.5, None, 0.7, 0.55],
      [0.3, 0.3, None, 0.35],
      [0.5, 0.5, 0.6, None]]
P_NONE = 0.1
CODES4 = ["def f(x):\n    return x + 1\n", "def f(x):\n    return x - 1\n", "def f(x):\n    return 2 * x\n",
          "def f(x):   # same program as candidate 0, other spacing and a comment\n    return x+1\n"]


def fake_table_judge(table, rng, p_none=P_NONE, seen=None):
    """A legit double of a stochastic judge: answers from a fixed preference table."""

    def judge(pairs):
        out = []
        for a, b in pairs:
            if seen is not None:
                seen.append((a, b))
            u = rng.random()
            out.append(None if u < p_none else 1 if rng.random() < table[a][b] else 2)
        return out

    return judge


def exact_distribution(n, table, groups, rounds, p_none=P_NONE):
    """P(winner index, winner's votes) by enumerating every vote count vector (multinomial)."""
    gids = sorted(set(groups))
    q = {g: 0.0 for g in gids}
    q_none = 0.0
    w = 1.0 / (n * (n - 1))
    for a, b in itertools.permutations(range(n), 2):
        if groups[a] == groups[b]:
            q[groups[a]] += w
            continue
        q_none += w * p_none
        q[groups[a]] += w * (1 - p_none) * table[a][b]
        q[groups[b]] += w * (1 - p_none) * (1 - table[a][b])
    probs = [q[g] for g in gids] + [q_none]
    dist: dict[tuple[int, int], float] = Counter()
    for counts in itertools.product(range(rounds + 1), repeat=len(gids)):
        rest = rounds - sum(counts)
        if rest < 0:
            continue
        full = [*counts, rest]
        p = factorial(rounds)
        for c, pr in zip(full, probs, strict=True):
            p = p / factorial(c) * pr ** c
        best = max(counts)
        tied = [g for g, c in zip(gids, counts, strict=True) if c == best]
        for g in tied:
            dist[(g, best)] += p / len(tied)
    return dist


def simulate(n_runs, table, codes, rounds, judge_table=None):
    outcomes = Counter()
    for seed in range(n_runs):
        judge = fake_table_judge(judge_table or table, np.random.default_rng(1_000_000 + seed))
        res = pairwise_vote(codes, rounds, judge, np.random.default_rng(seed))
        outcomes[(res.winner, res.votes[res.winner])] += 1
    return outcomes


def chi_square_pvalue(observed: Counter, expected: dict, n_runs: int) -> float:
    """Pearson chi-square goodness of fit; bins expecting < 5 observations are merged."""
    keys = sorted(set(expected) | set(observed))
    stat, df_bins, small_o, small_e = 0.0, 0, 0, 0.0
    for k in keys:
        e = expected.get(k, 0.0) * n_runs
        o = observed.get(k, 0)
        if e < 5:
            small_o += o
            small_e += e
            continue
        stat += (o - e) ** 2 / e
        df_bins += 1
    if small_e > 0:
        stat += (small_o - small_e) ** 2 / small_e
        df_bins += 1
    elif small_o:
        return 0.0  # an outcome that cannot happen did happen
    df = df_bins - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64)))


N_RUNS = 4000
ROUNDS = 6


@pytest.fixture(scope="module")
def three_way():
    codes = CODES4[:3]
    exact = exact_distribution(3, P1, [0, 1, 2], ROUNDS)
    observed = simulate(N_RUNS, P1, codes, ROUNDS)
    return codes, exact, observed


def test_exact_distribution_is_a_distribution():
    dist = exact_distribution(3, P1, [0, 1, 2], ROUNDS)
    assert sum(dist.values()) == pytest.approx(1.0, abs=1e-12)


def test_winner_and_votes_match_exact_distribution(three_way):
    _, exact, observed = three_way
    assert sum(observed.values()) == N_RUNS
    assert chi_square_pvalue(observed, exact, N_RUNS) > 1e-3
    # and the winner marginal within 4 standard errors
    for g in range(3):
        p = sum(v for (w, _), v in exact.items() if w == g)
        f = sum(v for (w, _), v in observed.items() if w == g) / N_RUNS
        assert abs(f - p) < 4 * (p * (1 - p) / N_RUNS) ** 0.5 + 1e-9


def test_position_bias_cancels_under_uniform_ordered_pairs():
    """Both orders are drawn equally often, so only the symmetrised preference matters."""
    unbiased = [[None if a == b else (P1[a][b] + 1 - P1[b][a]) / 2 for b in range(3)] for a in range(3)]
    biased, fair = exact_distribution(3, P1, [0, 1, 2], ROUNDS), exact_distribution(3, unbiased, [0, 1, 2], ROUNDS)
    assert all(biased[k] == pytest.approx(fair[k], abs=1e-12) for k in set(biased) | set(fair))


def test_check_rejects_a_wrong_table(three_way):
    """Negative check: the same observations against a table with candidates 1 and 2 swapped must fail."""
    _, _, observed = three_way
    perm = [0, 2, 1]
    swapped = [[None if a == b else P1[perm[a]][perm[b]] for b in range(3)] for a in range(3)]
    wrong = exact_distribution(3, swapped, [0, 1, 2], ROUNDS)
    assert chi_square_pvalue(observed, wrong, N_RUNS) < 1e-4


def test_check_rejects_a_broken_tie_break(monkeypatch, three_way):
    """Negative check: a tally that always keeps the smallest tied group must fail the same check."""
    codes, exact, _ = three_way

    def first_of_ties(round_winners, groups, rng):
        votes = Counter(groups[w] for w in round_winners if w is not None)
        best = max(votes.get(g, 0) for g in groups)
        winner = min(g for g in groups if votes.get(g, 0) == best)
        return winner, [votes.get(groups[i], 0) for i in range(len(groups))]

    monkeypatch.setattr(voting, "tally", first_of_ties)
    broken = simulate(N_RUNS, P1, codes, ROUNDS)
    assert chi_square_pvalue(broken, exact, N_RUNS) < 1e-4


def test_identical_candidates_share_votes_and_are_never_compared():
    """The share_votes option (not the paper's tally)."""
    codes = CODES4
    groups = identity_groups(codes)
    assert groups == [0, 1, 2, 0]
    seen: list[tuple[int, int]] = []
    outcomes = Counter()
    n_runs = 3000
    for seed in range(n_runs):
        judge = fake_table_judge(P1, np.random.default_rng(7_000_000 + seed), seen=seen)
        res = pairwise_vote(codes, ROUNDS, judge, np.random.default_rng(seed), groups, share_votes=True)
        assert res.winner in (0, 1, 2)  # group 0 is reported by its smallest index
        assert res.votes[0] == res.votes[3]  # shared votes
        outcomes[(res.winner, res.votes[res.winner])] += 1
    assert seen and all(groups[a] != groups[b] for a, b in seen)
    exact = exact_distribution(4, P1, groups, ROUNDS)
    assert chi_square_pvalue(outcomes, exact, n_runs) > 1e-3
    # ignoring the identity (judging the twins against each other) is a different distribution
    # judging the twins against each other as separate candidates is a different distribution
    table = [row[:] for row in P1]
    table[0][3] = table[3][0] = 0.5
    separate = exact_distribution(4, table, [0, 1, 2, 3], ROUNDS)
    merged = Counter()
    for (w, v), p in separate.items():
        merged[(0 if w == 3 else w, v)] += p
    assert chi_square_pvalue(outcomes, merged, n_runs) < 1e-4


def test_pairs_are_uniform_ordered_pairs():
    rng = np.random.default_rng(0)
    counts = Counter(draw_pairs(4, 24000, rng))
    assert set(counts) == set(itertools.permutations(range(4), 2))
    assert all(abs(c / 24000 - 1 / 12) < 0.01 for c in counts.values())


def test_seeded_and_single_candidate():
    judge = fake_table_judge(P1, np.random.default_rng(0))
    a = pairwise_vote(CODES4[:3], 8, judge, np.random.default_rng(5))
    judge = fake_table_judge(P1, np.random.default_rng(0))
    b = pairwise_vote(CODES4[:3], 8, judge, np.random.default_rng(5))
    assert (a.winner, a.votes, a.pairs) == (b.winner, b.votes, b.pairs)
    one = pairwise_vote(["print(1)"], 8, lambda pairs: pytest.fail("no judge call"), np.random.default_rng(0))
    assert one.winner == 0 and one.judged == 0
    with pytest.raises(ValueError, match="share_votes"):
        pairwise_vote(CODES4, 8, judge, np.random.default_rng(0), [0, 1, 2, 0])


# ---- the paper's tally, exactly: every draw of the implementation enumerated --------------------

class ScriptedRng:
    """Stands in for numpy's Generator: `integers(high)` returns the next scripted value (0 once the
    script ends) and records each call's bound, so every path of draws can be enumerated."""

    def __init__(self, script):
        self.script, self.calls, self.bounds = list(script), 0, []

    def integers(self, high):
        value = self.script[self.calls] if self.calls < len(self.script) else 0
        self.bounds.append(int(high))
        self.calls += 1
        return value


def implementation_law(codes, rounds, answer, share_votes=False):
    """P(winner) of pairwise_vote, exact: a DFS over every sequence of its random draws (pairs and
    tie-breaks), each path weighted by the product of 1/bound. `answer(a, b)` is a deterministic judge."""
    law: Counter = Counter()
    calls = 0
    stack = [[]]
    while stack:
        script = stack.pop()
        rng = ScriptedRng(script)

        def judge(pairs):
            nonlocal calls
            calls += len(pairs)
            return [answer(a, b) for a, b in pairs]

        # the default must be the paper's tally: share_votes is passed only when asked for
        res = pairwise_vote(codes, rounds, judge, rng, **({"share_votes": True} if share_votes else {}))
        path = script + [0] * (rng.calls - len(script))
        p = Fraction(1)
        for b in rng.bounds:
            p /= b
        law[res.winner] += p
        for j in range(len(script), len(path)):
            stack += [path[:j] + [v] for v in range(1, rng.bounds[j])]
    return law, calls


def analytic_law(n, rounds, answer):
    """The paper's tally in closed form for a deterministic judge: per round, candidate i gets the
    vote with probability (ordered pairs it wins) / (n(n-1)); the counts are multinomial; the argmax
    wins, ties uniformly. Exact fractions."""
    wins = Counter()
    for a, b in itertools.permutations(range(n), 2):
        wins[a if answer(a, b) == 1 else b] += 1
    pi = [Fraction(wins[i], n * (n - 1)) for i in range(n)]
    law: Counter = Counter()
    for counts in itertools.product(range(rounds + 1), repeat=n):
        if sum(counts) != rounds:
            continue
        p = Fraction(factorial(rounds))
        for c, q in zip(counts, pi, strict=True):
            p = p / factorial(c) * q ** c
        tied = [i for i, c in enumerate(counts) if c == max(counts)]
        for i in tied:
            law[i] += p / len(tied)
    return law


# a deterministic judge over 3 programs (0 and 2 are the same program, reformatted), position-biased
# on (1, 0): the position it picks for each ordered pair; ordered pairs won: 0 two, 1 one, 2 three
ANSWERS = {(0, 1): 1, (1, 0): 1, (0, 2): 1, (2, 0): 1, (1, 2): 2, (2, 1): 1}
CODES3 = [CODES4[0], CODES4[1], CODES4[3]]


def det_answer(a, b):
    return ANSWERS[(a, b)]


@pytest.mark.parametrize("rounds", [1, 2, 3, 4])
def test_paper_tally_is_exact(rounds):
    law, calls = implementation_law(CODES3, rounds, det_answer)
    reference = analytic_law(3, rounds, det_answer)
    assert sum(law.values()) == 1 and law == +reference
    assert calls > 0
    # and daj.eval.exact_vote (used by the smol experiment) agrees with both
    q = [[None if a == b else float(det_answer(a, b) == 1) for b in range(3)] for a in range(3)]
    assert winner_distribution(q, rounds) == pytest.approx([float(reference[i]) for i in range(3)], abs=1e-12)


def test_exact_expected_pass_of_the_judge_method():
    """A deterministic judge's exact expected pass@1 equals the implementation's, to the last bit."""
    passed = [True, False, False]
    law, _ = implementation_law(CODES3, 3, det_answer)
    implementation = sum(p for w, p in law.items() if passed[w])
    reference = sum(p for w, p in analytic_law(3, 3, det_answer).items() if passed[w])
    assert implementation == reference
    q = [[None if a == b else float(det_answer(a, b) == 1) for b in range(3)] for a in range(3)]
    assert expected_pass(passed, q, 3) == pytest.approx(float(reference), abs=1e-12)
    # the hybrid among the public passers {0, 1}: each wins one order, so each wins half the votes
    assert hybrid_expected_pass(passed, [True, True, False], q, 3) == pytest.approx(0.5, abs=1e-12)
    assert hybrid_expected_pass(passed, [False, False, False], q, 3) == pytest.approx(float(reference))


def test_shared_votes_are_a_different_tally():
    """Sharing votes between the identical programs 0 and 2 changes the law (so a default that shares
    votes fails test_paper_tally_is_exact), and never asks the judge about the twins."""
    shared, _ = implementation_law(CODES3, 3, det_answer, share_votes=True)
    assert sum(shared.values()) == 1 and shared != +analytic_law(3, 3, det_answer)


def test_ties_go_to_a_uniform_draw():
    """An always-position-1 judge: every candidate gets the same chance (ties to the first would not)."""
    law, _ = implementation_law(CODES3, 2, lambda a, b: 1)
    assert law == {0: Fraction(1, 3), 1: Fraction(1, 3), 2: Fraction(1, 3)}


def test_canonical_code():
    assert canonical_code("x=1\n# c\n") == canonical_code("x = 1")
    assert canonical_code("x = (") == canonical_code("x  =   (")  # unparsable: whitespace-normalised
    assert canonical_code("x = 1") != canonical_code("x = 2")

"""Best-of-N scaling curves: pass@1 against the pool size N and against the voting rounds R.

Against N (each problem's pool subsampled to `size` candidates, uniformly without replacement; a
pool smaller than `size` is used whole):
  random, oracle, first, public_tests   exact expectations over all subsets (closed forms)
  judge, hybrid   one seeded random subset per (problem, size), voted with R rounds (the hybrid
          among the subset's public-test passers); the full pool reuses the main bon votes, and size
          1 is the exact random value (a single random candidate); a pool whose candidates all pass
          or all fail scores its common verdict at every size, without the judge (every subset is
          unanimous too)
  prm, grm    the best-scored candidate of the same seeded subset as the judge's (the scores come from
          the main run: a candidate's score does not depend on the others), ties broken by a generator
          seeded by (seed, method, problem, size); the full pool is the main pick
Against R (r = 1..R): judge and hybrid = their main vote's first r rounds (ties broken by a seeded
generator; r = R is the main result); a problem without a main vote (no candidates, or a unanimous
pool that bon did not show to the judge) scores its common verdict at every r. The other methods do not
depend on R and are repeated as references (prm and grm: their main picks).

Every row carries the 95% bootstrap interval of its overall pass@1 over problems (`low`, `high`,
daj.eval.intervals) when `bootstrap` > 0, for the plots' bands.
"""

from __future__ import annotations

from collections.abc import Callable
from math import comb

import numpy as np

from daj.config import JUDGE_METHODS
from daj.data.pools import PoolCandidate
from daj.eval.bon import best_score, hybrid_pool, summarise, unanimous_verdict
from daj.eval.intervals import bootstrap_mean, percent
from daj.eval.passk import random_expectation, subset_oracle, subset_public_tests
from daj.judge.voting import VoteResult, stable_seed

# (problem, subset, size) -> {"judge": pass (0/1), "hybrid": pass (0/1)}
SubsetJudge = Callable[[dict, list[PoolCandidate], int], dict[str, float]]


def subset_first(passed: list[bool], size: int) -> float:
    """Expected verdict of the smallest-index candidate of a uniform subset: P(min = i) = C(N-1-i, s-1)/C(N, s)."""
    n = len(passed)
    return sum(comb(n - 1 - i, size - 1) for i, p in enumerate(passed) if p) / comb(n, size)


def static_at_size(cands: list[PoolCandidate], size: int) -> dict[str, float]:
    """Exact random / oracle / first / public_tests values for subsets of `size`."""
    if not cands:
        return {"random": 0.0, "oracle": 0.0, "first": 0.0, "public_tests": 0.0}
    s = min(size, len(cands))
    passed = [c.passed for c in cands]
    return {"random": random_expectation(passed),
            "oracle": subset_oracle(len(passed), sum(passed), s),
            "first": subset_first(passed, s),
            "public_tests": subset_public_tests(passed, [c.public_passed for c in cands], s)}


def subset_positions(n: int, size: int, seed: int, policy: str, problem_id: str) -> list[int]:
    """Positions of a seeded uniform subset of `size` of `n` candidates, in order."""
    rng = np.random.default_rng(stable_seed(seed, policy, problem_id, "subset", size))
    return sorted(rng.choice(n, size=size, replace=False).tolist())


def random_subset(cands: list[PoolCandidate], size: int, seed: int, policy: str, problem_id: str) -> list[PoolCandidate]:
    """A seeded uniform subset of `size` candidates, kept in index order."""
    return [cands[i] for i in subset_positions(len(cands), size, seed, policy, problem_id)]


def score_at_size(method: str, cands: list[PoolCandidate], scores: list[float] | None, size: int, seed: int,
                  policy: str, problem_id: str, main: float) -> float:
    """A reward-model method on the seeded subset of `size` (the full pool: its main pick `main`)."""
    if scores is None or size >= len(cands):  # unscored (no candidates or unanimous) or the whole pool
        return main
    if size == 1:
        return random_expectation([c.passed for c in cands])
    keep = subset_positions(len(cands), size, seed, policy, problem_id)  # the judge's subset
    best = best_score([scores[i] for i in keep], np.random.default_rng(stable_seed(seed, method, problem_id,
                                                                                   "tie", size)))
    return float(cands[keep[best]].passed)


def scaling_n(policy: str, problems: list[dict], pools: dict[str, list[PoolCandidate]], sizes: list[int],
              main_votes: dict[str, VoteResult] | None, judge: SubsetJudge | None, seed: int,
              progress: bool = False, scored: dict[str, dict[str, list[float]]] | None = None,
              main: dict[str, dict[str, float]] | None = None, bootstrap: int = 0) -> list[dict]:
    """Rows {policy, n, method, overall, easy, medium, hard, problems[, low, high]} for every size.

    `scored[method][problem_id]` are a reward-model method's candidate scores and `main[method]` its
    main per-problem values (prm, grm)."""
    from tqdm import tqdm

    scored, main = scored or {}, main or {}
    rows = []
    bar = tqdm(total=len(sizes) * len(problems), desc=f"scaling {policy}", unit="problem",
               disable=judge is None or not progress)
    for size in sizes:
        scores: dict[str, dict[str, float]] = {m: {} for m in ("random", "oracle", "first", "public_tests")}
        if judge is not None:
            scores.update({m: {} for m in JUDGE_METHODS})
        scores.update({m: {} for m in scored})
        for problem in problems:
            bar.update(1)
            pid = problem["id"]
            cands = pools.get(pid, [])
            for method, value in static_at_size(cands, size).items():
                scores[method][pid] = value
            for method, per in scored.items():
                scores[method][pid] = score_at_size(method, cands, per.get(pid), size, seed, policy, pid,
                                                    main[method][pid])
            if judge is None:
                continue
            if not cands:
                values = dict.fromkeys(JUDGE_METHODS, 0.0)
            elif (common := unanimous_verdict(cands)) is not None:
                values = dict.fromkeys(JUDGE_METHODS, float(common))
            elif size == 1:
                values = dict.fromkeys(JUDGE_METHODS, random_expectation([c.passed for c in cands]))
            elif size >= len(cands) and main_votes is not None and pid in main_votes:
                values = {"judge": float(cands[main_votes[pid].winner].passed),
                          "hybrid": _main_hybrid(cands, main_votes.get(f"hybrid:{pid}"))}
            elif size >= len(cands):
                values = judge(problem, cands, size)
            else:
                values = judge(problem, random_subset(cands, size, seed, policy, pid), size)
            for method in JUDGE_METHODS:
                scores[method][pid] = values[method]
        for method, entry in summarise(problems, scores).items():
            rows.append({"policy": policy, "n": size, "method": method, **_flat(entry),
                         **_band(problems, scores[method], seed, policy, ("n", size, method), bootstrap)})
    bar.close()
    return rows


def scaling_r(policy: str, problems: list[dict], pools: dict[str, list[PoolCandidate]], rounds: int,
              main_votes: dict[str, VoteResult], seed: int, main: dict[str, dict[str, float]] | None = None,
              bootstrap: int = 0) -> list[dict]:
    """Rows {policy, rounds, method, ...} for r = 1..rounds from the main votes (no new judge calls);
    `main[method]` adds the per-problem values of methods that do not vote (prm, grm) as references."""
    rows = []
    static = {m: {} for m in ("random", "oracle", "first", "public_tests")}
    for problem in problems:
        cands = pools.get(problem["id"], [])
        for method, value in static_at_size(cands, len(cands) or 1).items():
            static[method][problem["id"]] = value
    static.update(main or {})
    static_summary = summarise(problems, static)
    for r in range(1, rounds + 1):
        judged: dict[str, dict[str, float]] = {m: {} for m in JUDGE_METHODS}
        for problem in problems:
            pid = problem["id"]
            for method in JUDGE_METHODS:
                cands = pools.get(pid, [])
                cands, key = (hybrid_pool(cands), f"hybrid:{pid}") if method == "hybrid" else (cands, pid)
                if not cands or key not in main_votes:  # no candidates, or unanimous: no vote was needed
                    judged[method][pid] = 0.0 if not cands else float(cands[0].passed)
                    continue
                result = main_votes[key]
                if r == rounds:
                    winner = result.winner
                else:
                    rng = np.random.default_rng(stable_seed(seed, policy, pid, "ties", r, *(
                        [method] if method != "judge" else [])))
                    winner, _ = result.after(r, rng)
                judged[method][pid] = float(cands[winner].passed)
        for method, entry in {**static_summary, **summarise(problems, judged)}.items():
            values = judged[method] if method in judged else static[method]
            rows.append({"policy": policy, "rounds": r, "method": method, **_flat(entry),
                         **_band(problems, values, seed, policy, ("rounds", r, method), bootstrap)})
    return rows


def _band(problems: list[dict], values: dict[str, float], seed: int, policy: str, tag: tuple,
          reps: int) -> dict:
    """{"low", "high"}: the 95% bootstrap interval of the overall pass@1 in percent ({} without reps)."""
    if not reps:
        return {}
    ci = percent(bootstrap_mean([values[p["id"]] for p in problems], stable_seed(seed, policy, *tag), reps))
    return {"low": ci[0], "high": ci[1]} if ci else {"low": None, "high": None}


def _main_hybrid(cands: list[PoolCandidate], vote: VoteResult | None) -> float:
    """The hybrid's verdict on the full pool from its main vote (none: its pool was unanimous)."""
    keep = hybrid_pool(cands)
    return float(keep[vote.winner].passed if vote is not None else keep[0].passed)


def _flat(entry: dict) -> dict:
    return {"overall": entry["overall"], "easy": entry["easy"], "medium": entry["medium"],
            "hard": entry["hard"], "problems": entry["n"]}

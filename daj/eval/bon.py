"""Best-of-N selection and scoring: pick one candidate per problem and report pass@1 (%).

Methods (each problem scores the probability that the pick passes; pass@1 is the mean in %):
  random        exact expectation of a uniform pick: the pool's pass rate
  oracle        1 when any candidate passes
  first         the candidate with the smallest index
  public_tests  exact expectation of a uniform pick among candidates passing the public tests
                (among all candidates when none does)
  judge         pairwise voting with the judge (daj.judge.voting), R rounds; the paper's tally, or
                votes shared among identical candidates with share_votes (bon.share_votes)
  hybrid        the same vote among the candidates that pass the public tests only (all candidates
                when none does); no judge call when exactly one passes them

A problem of the split without any candidate in the pool scores 0 for every method (counted as
`missing` in the cost record). A problem whose candidates all pass or all fail is not shown to the
judge: any pick scores the common verdict, so the judge method scores it directly (0 judge calls,
`judge_skipped` in the problem rows and the cost record). The hybrid skips the judge in the same way
when the candidates it votes among all pass or all fail (a single public passer included).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from daj.data.pools import PoolCandidate
from daj.data.schema import DIFFICULTIES
from daj.eval.passk import oracle, public_tests_expectation, random_expectation
from daj.judge.prompt import build_messages
from daj.judge.runner import CallStats, JudgeRequest, JudgeRunner
from daj.judge.voting import PairJudge, VoteResult, identity_groups, pairwise_vote, stable_seed

log = logging.getLogger(__name__)
METHODS = ("random", "oracle", "first", "public_tests", "judge", "hybrid")
STATIC_METHODS = METHODS[:4]
JUDGE_METHODS = METHODS[4:]


@dataclass
class Pick:
    """The outcome of one method on one problem."""

    method: str
    expected: float          # probability that the pick passes (0 or 1 for a concrete pick)
    picked: int | None = None  # candidate index, None for expectation-only methods
    votes: list[int] | None = None
    cost: CallStats = field(default_factory=CallStats)
    skipped: bool = False      # judge not called: every candidate has the same verdict


def static_picks(cands: list[PoolCandidate]) -> list[Pick]:
    """random, oracle, first and public_tests on one pool (exact values)."""
    if not cands:
        return [Pick(m, 0.0) for m in STATIC_METHODS]
    passed = [c.passed for c in cands]
    public = [c.public_passed for c in cands]
    return [Pick("random", random_expectation(passed)),
            Pick("oracle", oracle(passed)),
            Pick("first", float(cands[0].passed), picked=cands[0].index),
            Pick("public_tests", public_tests_expectation(passed, public))]


def pair_judge(runner: JudgeRunner, problem: dict, codes: list[str], seed: int, stats: CallStats) -> PairJudge:
    """A PairJudge for voting: one batched runner call per vote; repeated pairs are sampled n times."""
    max_chars = runner.settings.max_prompt_chars

    def judge(pairs: list[tuple[int, int]]) -> list[int | None]:
        counts = Counter(pairs)
        requests = [JudgeRequest(build_messages(problem, [codes[a], codes[b]], max_chars), 2, n=count, seed=seed)
                    for (a, b), count in counts.items()]
        responses, call_stats = runner.respond(requests)
        stats.add(call_stats)
        queues = {pair: iter(rs) for pair, rs in zip(counts, responses, strict=True)}
        return [next(queues[p]).selection for p in pairs]

    return judge


def judge_vote(runner: JudgeRunner, problem: dict, cands: list[PoolCandidate], rounds: int, seed: int,
               tag: str = "bon", share_votes: bool = False) -> tuple[VoteResult, CallStats]:
    """Pairwise voting over `cands` (positions 0..len-1), seeded by (seed, tag, problem id)."""
    stats = CallStats()
    codes = [c.code for c in cands]
    rng = np.random.default_rng(stable_seed(seed, tag, problem["id"], "vote"))
    judge = pair_judge(runner, problem, codes, stable_seed(seed, tag, problem["id"], "sample") % 2**31, stats)
    groups = identity_groups(codes) if share_votes else None
    return pairwise_vote(codes, rounds, judge, rng, groups, share_votes=share_votes), stats


def unanimous_verdict(cands: list[PoolCandidate]) -> bool | None:
    """The common verdict when a non-empty pool's candidates all pass or all fail, else None."""
    verdicts = {c.passed for c in cands}
    return verdicts.pop() if len(verdicts) == 1 else None


def judge_pick(runner: JudgeRunner, problem: dict, cands: list[PoolCandidate], rounds: int,
               seed: int, share_votes: bool = False, method: str = "judge") -> tuple[Pick, VoteResult | None]:
    """The judge method on one problem; no judge call when the pick cannot change the verdict."""
    if not cands:
        return Pick(method, 0.0), None
    common = unanimous_verdict(cands)
    if common is not None:
        return Pick(method, float(common), skipped=True), None
    result, stats = judge_vote(runner, problem, cands, rounds, seed, share_votes=share_votes)
    winner = cands[result.winner]
    return Pick(method, float(winner.passed), picked=winner.index, votes=result.votes, cost=stats), result


def hybrid_pool(cands: list[PoolCandidate]) -> list[PoolCandidate]:
    """The candidates the hybrid votes among: the public-test passers, or all when none passes."""
    return [c for c in cands if c.public_passed] or list(cands)


def hybrid_pick(runner: JudgeRunner, problem: dict, cands: list[PoolCandidate], rounds: int,
                seed: int, share_votes: bool = False) -> tuple[Pick, VoteResult | None]:
    """The hybrid method: the judge's vote among hybrid_pool(cands) (same seeds as the judge method,
    so a vote over the same pool asks the same questions and hits the judge cache)."""
    keep = hybrid_pool(cands)
    pick, result = judge_pick(runner, problem, keep, rounds, seed, share_votes, method="hybrid")
    if pick.skipped and len(keep) == 1:
        pick.picked = keep[0].index
    return pick, result


def summarise(problems: list[dict], scores: dict[str, dict[str, float]]) -> dict:
    """{method: {overall, easy, medium, hard, n}} in percent; scores[method][problem_id] in [0, 1].

    A difficulty with no problem gets null.
    """
    out = {}
    for method, per_problem in scores.items():
        entry: dict = {}
        values = [per_problem[p["id"]] for p in problems]
        entry["overall"] = round(100.0 * sum(values) / len(values), 4) if values else None
        for diff in DIFFICULTIES:
            vals = [per_problem[p["id"]] for p in problems if p.get("difficulty") == diff]
            entry[diff] = round(100.0 * sum(vals) / len(vals), 4) if vals else None
        entry["n"] = len(values)
        out[method] = entry
    return out


@dataclass
class PolicyResult:
    """Everything the bon stage writes for one policy."""

    summary: dict
    rows: list[dict]
    cost: dict
    votes: dict[str, VoteResult]


def evaluate_policy(policy: str, problems: list[dict], pools: dict[str, list[PoolCandidate]],
                    runner: JudgeRunner | None, rounds: int, seed: int, progress: bool = True,
                    share_votes: bool = False) -> PolicyResult:
    """Score every method on every problem; the judge methods only when a runner is given.

    `votes` holds the judge method's votes by problem id, and the hybrid's under "hybrid:<id>"."""
    from tqdm import tqdm

    methods = METHODS if runner is not None else STATIC_METHODS
    scores: dict[str, dict[str, float]] = {m: {} for m in methods}
    rows, votes = [], {}
    cost = {m: CallStats() for m in methods}
    per_problem_cost: dict[str, dict] = {}
    missing = 0
    skipped: dict[str, Counter] = {m: Counter() for m in JUDGE_METHODS}
    for problem in tqdm(problems, desc=f"bon {policy}", unit="problem", disable=not progress):
        pid = problem["id"]
        cands = pools.get(pid, [])
        if not cands:
            missing += 1
        picks = static_picks(cands)
        if runner is not None:
            pick, result = judge_pick(runner, problem, cands, rounds, seed, share_votes)
            hpick, hresult = hybrid_pick(runner, problem, cands, rounds, seed, share_votes)
            picks += [pick, hpick]
            for key, p, r in ((pid, pick, result), (f"hybrid:{pid}", hpick, hresult)):
                if r is not None:
                    votes[key] = r
                if p.skipped:
                    skipped[p.method]["passing" if p.expected else "failing"] += 1
            per_problem_cost[pid] = {**pick.cost.to_dict(), "skipped": pick.skipped,
                                     "hybrid": {**hpick.cost.to_dict(), "skipped": hpick.skipped}}
        for pick in picks:
            scores[pick.method][pid] = pick.expected
            cost[pick.method].add(pick.cost)
            rows.append({"policy": policy, "problem_id": pid, "difficulty": problem.get("difficulty"),
                         "method": pick.method, "n_candidates": len(cands),
                         "picked": "" if pick.picked is None else pick.picked,
                         "votes": "" if pick.votes is None else ";".join(map(str, pick.votes)),
                         "verdict": round(pick.expected, 6),
                         "judge_skipped": pick.skipped if pick.method in JUDGE_METHODS else "",
                         "judge_responses": pick.cost.responses if pick.method in JUDGE_METHODS else "",
                         "judge_tokens": (pick.cost.prompt_tokens + pick.cost.completion_tokens
                                          if pick.method in JUDGE_METHODS else "")})
    if missing:
        log.warning("%s: %d of %d problems have no candidates (scored 0)", policy, missing, len(problems))
    n = max(len(problems), 1)
    cost_out = {"methods": {m: {**c.to_dict(), "responses_per_problem": c.responses / n,
                                "tokens_per_problem": (c.prompt_tokens + c.completion_tokens) / n}
                            for m, c in cost.items()},
                "missing_problems": missing, "judge_per_problem": per_problem_cost}
    if runner is not None:
        # unanimous pools: the judge's pick cannot change pass@1, so it was not called
        for method, key in (("judge", "judge_skipped"), ("hybrid", "hybrid_skipped")):
            s = skipped[method]
            cost_out[key] = {"problems": s.total(), "all_pass": s["passing"], "all_fail": s["failing"],
                             "model_calls": 0, "responses": 0}
        cost_out["share_votes"] = share_votes
    return PolicyResult(summarise(problems, scores), rows, cost_out, votes)

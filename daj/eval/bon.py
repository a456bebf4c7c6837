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
  prm, grm      the best score of a reward model (daj.eval.reward_models: a process reward model,
                a generative pointwise one); ties broken by a generator seeded by (seed, method, problem)

With `swap` (bon.swap) the judge methods judge every drawn pair in both orders and combine the two
answers (daj.judge.swap.respond_swapped): a constant position preference cancels.
With `bootstrap` > 0, every method's summary gets `ci95` (a 95% bootstrap interval over problems, in
percent), and judge and hybrid get paired intervals of their difference to random and to public_tests
(`minus_random`, `minus_public_tests`: {diff, ci95}) (daj.eval.intervals).

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

from daj.config import BON_METHODS, JUDGE_METHODS
from daj.data.pools import PoolCandidate
from daj.data.schema import DIFFICULTIES
from daj.eval.intervals import bootstrap_mean, paired_bootstrap, percent
from daj.eval.passk import oracle, public_tests_expectation, random_expectation
from daj.eval.reward_models import Scorer
from daj.judge.prompt import build_messages
from daj.judge.runner import CallStats, JudgeRequest, JudgeRunner
from daj.judge.swap import SwapRequest, respond_swapped
from daj.judge.voting import PairJudge, VoteResult, identity_groups, pairwise_vote, stable_seed

log = logging.getLogger(__name__)
METHODS = BON_METHODS[:6]             # the default: random, oracle, first, public_tests, judge, hybrid
STATIC_METHODS = METHODS[:4]
SCORE_METHODS = BON_METHODS[6:]       # prm, grm
PAIRED = ("random", "public_tests")   # the judge methods' paired intervals are against these


@dataclass
class Pick:
    """The outcome of one method on one problem."""

    method: str
    expected: float          # probability that the pick passes (0 or 1 for a concrete pick)
    picked: int | None = None  # candidate index, None for expectation-only methods
    votes: list[int] | None = None
    cost: CallStats = field(default_factory=CallStats)
    skipped: bool = False      # judge not called: every candidate has the same verdict
    scores: list[float] | None = None  # prm / grm: each candidate's score
    unparsable: int = 0                # grm: answers without a parsable score (scored lowest)


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


def pair_judge(runner: JudgeRunner, problem: dict, codes: list[str], seed: int, stats: CallStats,
               swap: bool = False) -> PairJudge:
    """A PairJudge for voting: one batched runner call per vote; repeated pairs are sampled n times.
    With `swap`, each pair is judged in both orders and the answers combined (daj.judge.swap)."""
    max_chars = runner.settings.max_prompt_chars

    def chat(a: int, b: int):
        return build_messages(problem, [codes[a], codes[b]], max_chars)

    def judge(pairs: list[tuple[int, int]]) -> list[int | None]:
        counts = Counter(pairs)
        if swap:
            requests = [SwapRequest(chat(a, b), chat(b, a), n=count, seed=seed) for (a, b), count in counts.items()]
            answers, call_stats = respond_swapped(runner, requests)
        else:
            answers, call_stats = runner.respond([JudgeRequest(chat(a, b), 2, n=count, seed=seed)
                                                  for (a, b), count in counts.items()])
        stats.add(call_stats)
        queues = {pair: iter(rs) for pair, rs in zip(counts, answers, strict=True)}
        return [next(queues[p]).selection for p in pairs]

    return judge


def judge_vote(runner: JudgeRunner, problem: dict, cands: list[PoolCandidate], rounds: int, seed: int,
               tag: str = "bon", share_votes: bool = False, swap: bool = False) -> tuple[VoteResult, CallStats]:
    """Pairwise voting over `cands` (positions 0..len-1), seeded by (seed, tag, problem id)."""
    stats = CallStats()
    codes = [c.code for c in cands]
    rng = np.random.default_rng(stable_seed(seed, tag, problem["id"], "vote"))
    judge = pair_judge(runner, problem, codes, stable_seed(seed, tag, problem["id"], "sample") % 2**31, stats, swap)
    groups = identity_groups(codes) if share_votes else None
    return pairwise_vote(codes, rounds, judge, rng, groups, share_votes=share_votes), stats


def unanimous_verdict(cands: list[PoolCandidate]) -> bool | None:
    """The common verdict when a non-empty pool's candidates all pass or all fail, else None."""
    verdicts = {c.passed for c in cands}
    return verdicts.pop() if len(verdicts) == 1 else None


def judge_pick(runner: JudgeRunner, problem: dict, cands: list[PoolCandidate], rounds: int,
               seed: int, share_votes: bool = False, method: str = "judge",
               swap: bool = False) -> tuple[Pick, VoteResult | None]:
    """The judge method on one problem; no judge call when the pick cannot change the verdict."""
    if not cands:
        return Pick(method, 0.0), None
    common = unanimous_verdict(cands)
    if common is not None:
        return Pick(method, float(common), skipped=True), None
    result, stats = judge_vote(runner, problem, cands, rounds, seed, share_votes=share_votes, swap=swap)
    winner = cands[result.winner]
    return Pick(method, float(winner.passed), picked=winner.index, votes=result.votes, cost=stats), result


def hybrid_pool(cands: list[PoolCandidate]) -> list[PoolCandidate]:
    """The candidates the hybrid votes among: the public-test passers, or all when none passes."""
    return [c for c in cands if c.public_passed] or list(cands)


def hybrid_pick(runner: JudgeRunner, problem: dict, cands: list[PoolCandidate], rounds: int,
                seed: int, share_votes: bool = False, swap: bool = False) -> tuple[Pick, VoteResult | None]:
    """The hybrid method: the judge's vote among hybrid_pool(cands) (same seeds as the judge method,
    so a vote over the same pool asks the same questions and hits the judge cache)."""
    keep = hybrid_pool(cands)
    pick, result = judge_pick(runner, problem, keep, rounds, seed, share_votes, method="hybrid", swap=swap)
    if pick.skipped and len(keep) == 1:
        pick.picked = keep[0].index
    return pick, result


def best_score(scores: list[float], rng: np.random.Generator) -> int:
    """The position of the highest score; ties broken uniformly by `rng`."""
    top = max(scores)
    best = [i for i, s in enumerate(scores) if s == top]
    return best[0] if len(best) == 1 else int(best[rng.integers(len(best))])


def score_pick(scorer: Scorer, method: str, problem: dict, cands: list[PoolCandidate], seed: int) -> Pick:
    """A reward-model method on one problem: every candidate scored, the best one picked (ties at random,
    seeded by (seed, method, problem id)); no model call when the pick cannot change the verdict."""
    if not cands:
        return Pick(method, 0.0)
    common = unanimous_verdict(cands)
    if common is not None:
        return Pick(method, float(common), skipped=True)
    scored = scorer.score(problem, [c.code for c in cands])
    best = best_score(scored.scores, np.random.default_rng(stable_seed(seed, method, problem["id"], "tie")))
    return Pick(method, float(cands[best].passed), picked=cands[best].index, cost=scored.stats,
                scores=scored.scores, unparsable=scored.unparsable)


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


def intervals(problems: list[dict], scores: dict[str, dict[str, float]], seed: int, reps: int,
              tag: str = "") -> dict:
    """{method: {"ci95": [low, high]}} in percent for every method, plus for judge and hybrid
    `minus_random` / `minus_public_tests`: {diff, ci95}, the paired interval of the difference (the same
    resampled problems for both). Seeded by (seed, tag, "bootstrap"): deterministic."""
    ids = [p["id"] for p in problems]
    boot_seed = stable_seed(seed, tag, "bootstrap")
    out: dict = {}
    for method, per in scores.items():
        values = [per[i] for i in ids]
        out[method] = {"ci95": percent(bootstrap_mean(values, boot_seed, reps))}
        if method not in JUDGE_METHODS:
            continue
        for ref in PAIRED:
            if ref not in scores:
                continue
            other = [scores[ref][i] for i in ids]
            diff = 100.0 * (sum(values) - sum(other)) / len(ids) if ids else None
            out[method][f"minus_{ref}"] = {"diff": None if diff is None else round(diff, 4),
                                           "ci95": percent(paired_bootstrap(values, other, boot_seed, reps))}
    return out


@dataclass
class PolicyResult:
    """Everything the bon stage writes for one policy; `scores[method][problem_id]` is the probability
    that the method's pick passes."""

    summary: dict
    rows: list[dict]
    cost: dict
    votes: dict[str, VoteResult]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    score_lists: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def _row(policy: str, problem: dict, cands: list[PoolCandidate], pick: Pick) -> dict:
    asks_model = pick.method in JUDGE_METHODS + SCORE_METHODS
    row = {"policy": policy, "problem_id": problem["id"], "difficulty": problem.get("difficulty"),
           "method": pick.method, "n_candidates": len(cands),
           "picked": "" if pick.picked is None else pick.picked,
           "votes": "" if pick.votes is None else ";".join(map(str, pick.votes)),
           "verdict": round(pick.expected, 6),
           "judge_skipped": pick.skipped if asks_model else "",
           "judge_responses": pick.cost.responses if asks_model else "",
           "judge_tokens": pick.cost.prompt_tokens + pick.cost.completion_tokens if asks_model else ""}
    if pick.method in SCORE_METHODS:  # the column appears only when a reward model runs
        row["scores"] = "" if pick.scores is None else ";".join(f"{s:.6g}" for s in pick.scores)
    return row


def evaluate_policy(policy: str, problems: list[dict], pools: dict[str, list[PoolCandidate]],
                    runner: JudgeRunner | None, rounds: int, seed: int, progress: bool = True,
                    share_votes: bool = False, methods: tuple[str, ...] | list[str] | None = None,
                    swap: bool = False, scorers: dict[str, Scorer] | None = None,
                    bootstrap: int = 0) -> PolicyResult:
    """Score `methods` (default: the static ones, plus judge and hybrid when a runner is given) on every
    problem. The judge methods need `runner`, prm and grm their scorer in `scorers`. With `bootstrap`
    replicates > 0 the summary carries the intervals of `intervals`.

    `votes` holds the judge method's votes by problem id, and the hybrid's under "hybrid:<id>"."""
    from tqdm import tqdm

    scorers = scorers or {}
    if methods is None:
        methods = METHODS if runner is not None else STATIC_METHODS
    missing_model = [m for m in methods if (m in JUDGE_METHODS and runner is None)
                     or (m in SCORE_METHODS and m not in scorers)]
    if missing_model:
        raise ValueError(f"method {missing_model[0]!r} needs its model (a judge runner or a scorer)")
    # the static methods are exact and free: computed always (the paired intervals use them)
    computed = list(dict.fromkeys([*STATIC_METHODS, *methods]))
    scores: dict[str, dict[str, float]] = {m: {} for m in computed}
    score_lists: dict[str, dict[str, list[float]]] = {m: {} for m in methods if m in SCORE_METHODS}
    rows, votes = [], {}
    cost = {m: CallStats() for m in methods}
    unparsable = Counter()
    per_problem_cost: dict[str, dict] = {}
    missing = 0
    asked = [m for m in JUDGE_METHODS + SCORE_METHODS if m in methods]
    skipped: dict[str, Counter] = {m: Counter() for m in asked}
    for problem in tqdm(problems, desc=f"bon {policy}", unit="problem", disable=not progress):
        pid = problem["id"]
        cands = pools.get(pid, [])
        if not cands:
            missing += 1
        picks = static_picks(cands)
        results: dict[str, VoteResult | None] = {}
        if "judge" in methods:
            pick, results[pid] = judge_pick(runner, problem, cands, rounds, seed, share_votes, swap=swap)
            picks.append(pick)
        if "hybrid" in methods:
            pick, results[f"hybrid:{pid}"] = hybrid_pick(runner, problem, cands, rounds, seed, share_votes, swap)
            picks.append(pick)
        for method in SCORE_METHODS:
            if method in methods:
                picks.append(score_pick(scorers[method], method, problem, cands, seed))
        votes.update({key: r for key, r in results.items() if r is not None})
        by_method = {p.method: p for p in picks}
        if any(m in methods for m in JUDGE_METHODS):
            judged = [by_method[m] for m in JUDGE_METHODS if m in methods]
            per_problem_cost[pid] = {**judged[0].cost.to_dict(), "skipped": judged[0].skipped}
            if "judge" in methods and "hybrid" in methods:
                h = by_method["hybrid"]
                per_problem_cost[pid]["hybrid"] = {**h.cost.to_dict(), "skipped": h.skipped}
        for pick in picks:
            if pick.method in asked and pick.skipped:
                skipped[pick.method]["passing" if pick.expected else "failing"] += 1
            scores[pick.method][pid] = pick.expected
            if pick.method in score_lists and pick.scores is not None:
                score_lists[pick.method][pid] = pick.scores
            if pick.method not in methods:
                continue
            cost[pick.method].add(pick.cost)
            unparsable[pick.method] += pick.unparsable
            rows.append(_row(policy, problem, cands, pick))
    if missing:
        log.warning("%s: %d of %d problems have no candidates (scored 0)", policy, missing, len(problems))
    n = max(len(problems), 1)
    cost_out = {"methods": {m: {**c.to_dict(), "responses_per_problem": c.responses / n,
                                "tokens_per_problem": (c.prompt_tokens + c.completion_tokens) / n}
                            for m, c in cost.items()},
                "missing_problems": missing, "judge_per_problem": per_problem_cost}
    for method in SCORE_METHODS:
        if method in methods:
            cost_out["methods"][method]["unparsable"] = unparsable[method]
    # unanimous pools: a pick cannot change pass@1, so no model was asked
    for method in asked:
        key = "judge_skipped" if method == "judge" else f"{method}_skipped"
        s = skipped[method]
        cost_out[key] = {"problems": s.total(), "all_pass": s["passing"], "all_fail": s["failing"],
                         "model_calls": 0, "responses": 0}
    if any(m in methods for m in JUDGE_METHODS):
        cost_out["share_votes"] = share_votes
    summary = summarise(problems, {m: scores[m] for m in methods})
    if bootstrap:
        for method, extra in intervals(problems, scores, seed, bootstrap, policy).items():
            if method in summary:
                summary[method].update(extra)
    if "grm" in summary:
        summary["grm"]["unparsable"] = unparsable["grm"]
    return PolicyResult(summary, rows, cost_out, votes, scores, score_lists)

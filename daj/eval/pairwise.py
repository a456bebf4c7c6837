"""Pairwise accuracy of a judge on mixed pairs (one passing, one failing candidate), both orders.

The pairs are those of training (daj.judge.pairs.pair_prompts): per problem, every (pass, fail)
pair of the pooled candidates, at most `max_pairs` of them (seeded), each shown in both orders.
Each ordered pair gets `responses` judge responses (seeded; default one); a response is correct when
it selects the passing program. With several responses, every metric is computed on each response
index k (the k-th response to every prompt) and averaged over k, so accuracy is the mean over all
responses and the pair metrics compare the k-th responses of the two orders. Several responses cost
one scoring per prompt in the judge's selection-only mode and cut the sampling noise of a sampled
(forced) selection.

Metrics of one judge (all rates over ordered prompts unless said otherwise):
  accuracy             correct selections / prompts (a format error counts as not correct)
  accuracy_by_difficulty  the same per problem difficulty (null where no prompt has it)
  accuracy_by_order    {"pass_first", "pass_second"}: accuracy when the passing program is shown
                       at position 1, and at position 2
  both_orders_accuracy pairs whose two orders are both correct / pairs
  consistency, swap_consistency  (the same value) pairs where the judge selects the same program in
                       both orders / pairs; 1 - swap_consistency is the swap-inconsistency rate
  accuracy_ci95        [low, high]: 95% percentile bootstrap interval of the accuracy, resampling
                       problems with replacement (all prompts and responses of a problem together)
  accuracy_by_order_ci95  the same for {"pass_first", "pass_second"}
  format_error_rate    responses with no valid selection (after forced selection, if enabled)
  raw_format_error_rate  the model's own format errors (before forced selection)
  forced_rate          responses completed by forced selection
  position1_rate       selections of position 1 / responses with a valid selection (null if none)
  n_pairs, n_prompts, n_problems, responses_per_prompt
A random judge scores 0.5 accuracy; a judge that always picks position 1 scores 0.5 accuracy,
position1_rate 1 and swap_consistency 0 (per order: 1 when the passing program is first, 0 when second).

Swap-combined answers (bon.swap, `swap_select`): every ordered prompt's answer is the combination of
both orders of its pair (daj.judge.swap.respond_swapped, the same judge requests as `runner_select`,
so they cost no further model call); both orders of a pair then name the same program. Their metrics
(`combined=True`) are the same minus raw_format_error_rate and forced_rate, plus
  tie_rate             combined answers decided by the pair's seeded coin (orders disagreeing with
                       votes only, or equal combined scores)
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from daj.data.schema import DIFFICULTIES
from daj.judge.pairs import PairPrompt
from daj.judge.prompt import build_messages
from daj.judge.runner import JudgeRequest, JudgeRunner
from daj.judge.swap import SwapRequest, respond_swapped


@dataclass(frozen=True)
class Answer:
    """The part of a judge response the metrics need."""

    selection: int | None      # after forced selection; None = format error
    raw_selection: int | None  # as the model wrote it
    forced: bool
    tie: bool = False          # swap-combined answers: decided by the pair's seeded coin


SelectFn = Callable[[list[PairPrompt]], list[list[Answer]]]


def runner_select(runner: JudgeRunner, seed: int, responses: int = 1) -> SelectFn:
    """A SelectFn asking `runner` for `responses` answers per ordered pair (the training prompt:
    build_messages); it returns answers[i] = the list of answers to prompts[i]."""
    max_chars = runner.settings.max_prompt_chars

    def select(prompts: list[PairPrompt]) -> list[list[Answer]]:
        requests = [JudgeRequest(build_messages(p.problem, [p.shown[0].code, p.shown[1].code], max_chars), 2,
                                 n=responses, seed=seed) for p in prompts]
        out, _ = runner.respond(requests)
        return [[Answer(r.selection, r.raw_selection, r.forced) for r in rs] for rs in out]

    return select


def swap_select(runner: JudgeRunner, seed: int, responses: int = 1) -> SelectFn:
    """A SelectFn whose answers combine both orders of each pair (see the module docstring): prompt i
    is asked as shown (forward) and with its candidates swapped (backward), `responses` times each."""
    max_chars = runner.settings.max_prompt_chars

    def select(prompts: list[PairPrompt]) -> list[list[Answer]]:
        requests = []
        for p in prompts:
            a, b = p.shown[0].code, p.shown[1].code
            requests.append(SwapRequest(build_messages(p.problem, [a, b], max_chars),
                                        build_messages(p.problem, [b, a], max_chars), n=responses, seed=seed))
        out, _ = respond_swapped(runner, requests)
        return [[Answer(c.selection, c.selection, False, c.tie) for c in choices] for choices in out]

    return select


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def pairwise_metrics(prompts: list[PairPrompt], answers: list[Answer], combined: bool = False) -> dict:
    """The metrics of the module docstring for answers[i] to prompts[i] (`combined`: swap-combined ones)."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(answers)} answers for {len(prompts)} prompts")
    n = len(prompts)
    correct = [a.selection == p.correct_position for p, a in zip(prompts, answers, strict=True)]
    by_diff: dict[str, list[bool]] = defaultdict(list)
    by_order: dict[int, list[bool]] = defaultdict(list)
    pairs: dict[tuple, list[tuple[PairPrompt, Answer, bool]]] = defaultdict(list)
    for p, a, ok in zip(prompts, answers, correct, strict=True):
        by_diff[p.problem.get("difficulty")].append(ok)
        by_order[p.correct_position].append(ok)
        # the unordered pair: the group id without its shown order
        pairs[(p.problem["id"], *sorted(f"{c.policy}:{c.index}" for c in p.shown))].append((p, a, ok))
    both = consistent = 0
    for members in pairs.values():
        if len(members) != 2:
            continue
        both += all(ok for _, _, ok in members)
        picked = [p.shown[a.selection - 1] if a.selection in (1, 2) else None for p, a, _ in members]
        consistent += picked[0] is not None and picked[0] == picked[1]
    parsed = [a.selection for a in answers if a.selection is not None]
    out = {
        "accuracy": _rate(sum(correct), n),
        "accuracy_by_difficulty": {d: _rate(sum(by_diff[d]), len(by_diff[d])) for d in DIFFICULTIES},
        "accuracy_by_order": {"pass_first": _rate(sum(by_order[1]), len(by_order[1])),
                              "pass_second": _rate(sum(by_order[2]), len(by_order[2]))},
        "both_orders_accuracy": _rate(both, len(pairs)),
        "consistency": _rate(consistent, len(pairs)),
        "swap_consistency": _rate(consistent, len(pairs)),
        "format_error_rate": _rate(sum(a.selection is None for a in answers), n),
        "raw_format_error_rate": _rate(sum(a.raw_selection is None for a in answers), n),
        "forced_rate": _rate(sum(a.forced for a in answers), n),
        "position1_rate": _rate(sum(s == 1 for s in parsed), len(parsed)),
        "n_pairs": len(pairs),
        "n_prompts": n,
        "n_problems": len({p.problem["id"] for p in prompts}),
    }
    if combined:
        del out["raw_format_error_rate"], out["forced_rate"]
        out["tie_rate"] = _rate(sum(a.tie for a in answers), n)
    return out


def _mean(values: list):
    """Element-wise mean of equally shaped metric values (dicts recursively; None stays None)."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _mean([v[k] for v in values]) for k in first}
    if first is None or isinstance(first, int) and not isinstance(first, bool):
        return first  # counts (the same for every response index) and undefined rates
    return sum(values) / len(values)


def replicate_metrics(prompts: list[PairPrompt], answers: list[list[Answer]], combined: bool = False) -> dict:
    """pairwise_metrics of each response index k, averaged over k (see the module docstring)."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(answers)} answer lists for {len(prompts)} prompts")
    n = min((len(a) for a in answers), default=1)
    if any(len(a) != n for a in answers) or n < 1:
        raise ValueError("every prompt needs the same number (>= 1) of answers")
    out = _mean([pairwise_metrics(prompts, [a[k] for a in answers], combined) for k in range(n)])
    return {**out, **accuracy_intervals(prompts, answers), "responses_per_prompt": n}


def bootstrap_ci(counts: list[tuple[int, int]], reps: int = 2000, seed: int = 0,
                 level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of sum(successes) / sum(trials) over units (problems).

    `counts[i]` = (successes, trials) of unit i; each replicate draws len(counts) units with
    replacement (seeded). None when there is no trial at all.
    """
    units = [(s, t) for s, t in counts if t > 0]
    if not units:
        return None
    s = np.array([u[0] for u in units], dtype=np.float64)
    t = np.array([u[1] for u in units], dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(units), size=(reps, len(units)))
    ratios = s[idx].sum(axis=1) / t[idx].sum(axis=1)
    tail = (1.0 - level) / 2
    return [float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1.0 - tail))]


def accuracy_intervals(prompts: list[PairPrompt], answers: list[list[Answer]], reps: int = 2000,
                       seed: int = 0) -> dict:
    """accuracy_ci95 and accuracy_by_order_ci95: bootstrap over problems (module docstring)."""
    per: dict[tuple[str, int | None], list[int]] = defaultdict(lambda: [0, 0])
    for p, answers_p in zip(prompts, answers, strict=True):
        for order in (None, p.correct_position):
            cell = per[(p.problem["id"], order)]
            cell[0] += sum(a.selection == p.correct_position for a in answers_p)
            cell[1] += len(answers_p)
    problems = sorted({pid for pid, _ in per})

    def ci(order: int | None) -> list[float] | None:
        return bootstrap_ci([tuple(per.get((pid, order), (0, 0))) for pid in problems], reps, seed)

    return {"accuracy_ci95": ci(None), "accuracy_by_order_ci95": {"pass_first": ci(1), "pass_second": ci(2)}}


def evaluate_judge(prompts: list[PairPrompt], select: SelectFn, combined: bool = False) -> dict:
    """Ask `select` about every ordered pair; the metrics plus the wall time in `seconds` (`combined`:
    swap_select's answers)."""
    start = time.perf_counter()
    answers = select(prompts) if prompts else []
    metrics = replicate_metrics(prompts, answers, combined) if prompts else {
        **pairwise_metrics([], [], combined), "accuracy_ci95": None,
        "accuracy_by_order_ci95": {"pass_first": None, "pass_second": None}, "responses_per_prompt": 0}
    return {**metrics, "seconds": round(time.perf_counter() - start, 3)}

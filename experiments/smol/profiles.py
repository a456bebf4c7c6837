"""Data, caps and exact metrics of the scaled smol experiment (experiments/smol/scale.py, docs/smol.md).

Profiles: `cpu` is the reduction that fits a loaded 2-core machine in about an hour; `gpu` is the
device run of issue 16 (all mixed pairs, 1,000 optimizer steps, 3 seeds). Every key is a command-line
option of the script (`--lower-problems 40`, `--reweights none,domain`).
"""

from __future__ import annotations

from collections import defaultdict

from daj.data.pools import PoolCandidate
from daj.eval.bon import summarise, unanimous_verdict
from daj.eval.exact_vote import expected_pass, hybrid_expected_pass
from daj.eval.pairwise import Answer, bootstrap_ci, replicate_metrics
from daj.eval.passk import oracle, public_tests_expectation, random_expectation
from daj.judge.pairs import choose_problems, pair_prompts
from daj.judge.prompt import build_messages, render_prompt

REWEIGHTS = ["none", "domain", "instance_table", "instance_net"]
PROFILES: dict[str, dict] = {
    "cpu": {"seeds": ["0"], "reweights": REWEIGHTS, "objective": "dpo",
            "steps": 2, "grad_accum": 1, "meta_every": 1, "lr": 1e-4, "meta_lr": 1e-2,
            "precision": "fp32", "max_length": 1400, "max_prompt_chars": 2000,
            "lower_problems": 4, "upper_problems": 1, "test_problems": 3, "rounds": 3, "diagnose": 1},
    "gpu": {"seeds": ["0", "1", "2"], "reweights": REWEIGHTS, "objective": "dpo",
            "steps": 1000, "grad_accum": 1, "meta_every": 10, "lr": 1e-5, "meta_lr": 1e-3,
            "precision": "fp32", "max_length": 1400, "max_prompt_chars": 2000,
            "lower_problems": 0, "upper_problems": 0, "test_problems": 0, "rounds": 3, "diagnose": 1},
}
OPTIONS = tuple(PROFILES["cpu"])


def choose_capped(split: str, problems: list[dict], pools: dict[str, list[PoolCandidate]], cap: int,
                  seed: int) -> tuple[list[dict], dict]:
    """All problems (cap 0) or a seeded choice of `cap` among those with a mixed pair."""
    return choose_problems(split, problems, pools, cap or None, seed)


def build_records(split: str, problems: list[dict], pools: dict[str, list[PoolCandidate]], tokenizer,
                  max_chars: int) -> list[dict]:
    """DPO records of every mixed pair in both orders, selection-only responses (module docstring)."""
    out = []
    for p in pair_prompts(split, problems, pools, None, seed=0):
        messages = build_messages(p.problem, [p.shown[0].code, p.shown[1].code], max_chars)
        right, wrong = p.correct_position, 3 - p.correct_position
        out.append({"id": p.group, "group": p.group, "problem_id": p.problem["id"], "domain": p.problem["domain"],
                    "prompt": render_prompt(tokenizer, messages), "chosen": f"<selection>{right}</selection>",
                    "rejected": f"<selection>{wrong}</selection>", "correct_position": right})
    return out


def ordered_pairs_to_score(problems: list[dict], pools: dict[str, list[PoolCandidate]]) -> list[tuple]:
    """(problem, a, b) for every ordered pair of candidate positions of every problem whose
    candidates disagree (a unanimous pool needs no judge)."""
    out = []
    for problem in problems:
        cands = pools.get(problem["id"], [])
        if not cands or unanimous_verdict(cands) is not None:
            continue
        out += [(problem, a, b) for a in range(len(cands)) for b in range(len(cands)) if a != b]
    return out


def _win(x: float, y: float) -> float:
    return 1.0 if x > y else 0.0 if x < y else 0.5


def answer_tables(n: int, lp: dict[tuple[int, int], tuple[float, float]]) -> tuple[list, list]:
    """(greedy, swap) tables q[a][b] = P(position 1 wins | a first, b second).

    greedy: the likelier tag of that prompt; swap: a's summed log-probability of being picked over
    both orders (position 1 in (a, b), position 2 in (b, a)) against b's; ties count half.
    """
    greedy = [[None if a == b else _win(*lp[(a, b)]) for b in range(n)] for a in range(n)]
    swap = [[None if a == b else _win(lp[(a, b)][0] + lp[(b, a)][1], lp[(a, b)][1] + lp[(b, a)][0])
             for b in range(n)] for a in range(n)]
    return greedy, swap


def evaluate_scores(problems: list[dict], pools: dict[str, list[PoolCandidate]], scores: list[dict],
                    rounds: int) -> dict:
    """Pairwise and Best-of-N figures of one judge from its raw scores (exact; see the script)."""
    lp: dict[str, dict[tuple[int, int], tuple[float, float]]] = defaultdict(dict)
    for r in scores:
        lp[r["problem_id"]][(r["a"], r["b"])] = (r["logp1"], r["logp2"])
    # pairwise: the mixed pairs in both orders, greedy answers (ties: position 1)
    prompts = pair_prompts("test", problems, pools, None, seed=0)
    answers = []
    for p in prompts:
        cands = pools[p.problem["id"]]
        pos = {(c.policy, c.index): i for i, c in enumerate(cands)}
        a, b = pos[(p.shown[0].policy, p.shown[0].index)], pos[(p.shown[1].policy, p.shown[1].index)]
        l1, l2 = lp[p.problem["id"]][(a, b)]
        answers.append([Answer(1 if l1 >= l2 else 2, 1 if l1 >= l2 else 2, True)])
    pairwise = replicate_metrics(prompts, answers) if prompts else {}
    swap_counts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for p in prompts:
        if p.correct_position != 1:
            continue  # each unordered pair once: the order with the passing program first
        cands = pools[p.problem["id"]]
        pos = {(c.policy, c.index): i for i, c in enumerate(cands)}
        g, f = pos[(p.shown[0].policy, p.shown[0].index)], pos[(p.shown[1].policy, p.shown[1].index)]
        table = lp[p.problem["id"]]
        cell = swap_counts[p.problem["id"]]
        cell[0] += _win(table[(g, f)][0] + table[(f, g)][1], table[(g, f)][1] + table[(f, g)][0])
        cell[1] += 1
    swap_total = sum(c[1] for c in swap_counts.values())
    pairwise["swap_combined_accuracy"] = (sum(c[0] for c in swap_counts.values()) / swap_total
                                          if swap_total else None)
    pairwise["swap_combined_accuracy_ci95"] = bootstrap_ci([tuple(c) for c in swap_counts.values()])
    # Best-of-N: exact expectations of the paper's vote
    methods = ("random", "oracle", "public_tests", "judge", "hybrid", "judge_swap", "hybrid_swap")
    values: dict[str, dict[str, float]] = {m: {} for m in methods}
    calls = {"judge": 0, "hybrid": 0}
    for problem in problems:
        pid = problem["id"]
        cands = pools.get(pid, [])
        passed = [c.passed for c in cands]
        public = [c.public_passed for c in cands]
        if not cands:
            for m in methods:
                values[m][pid] = 0.0
            continue
        values["random"][pid] = random_expectation(passed)
        values["oracle"][pid] = oracle(passed)
        values["public_tests"][pid] = public_tests_expectation(passed, public)
        if unanimous_verdict(cands) is not None:
            for m in ("judge", "hybrid", "judge_swap", "hybrid_swap"):
                values[m][pid] = float(passed[0])
            continue
        greedy, swap = answer_tables(len(cands), lp[pid])
        values["judge"][pid] = expected_pass(passed, greedy, rounds)
        values["judge_swap"][pid] = expected_pass(passed, swap, rounds)
        values["hybrid"][pid] = hybrid_expected_pass(passed, public, greedy, rounds)
        values["hybrid_swap"][pid] = hybrid_expected_pass(passed, public, swap, rounds)
        calls["judge"] += rounds
        keep = [c for c in cands if c.public_passed] or cands
        calls["hybrid"] += rounds if len({c.passed for c in keep}) == 2 else 0
    bon = summarise(problems, values)
    margins = [r["logp1"] - r["logp2"] for r in scores]
    pairwise["mean_tag_margin"] = sum(margins) / len(margins) if margins else None  # log p(1) - log p(2)
    summary = {"accuracy": pairwise.get("accuracy"), "accuracy_ci95": pairwise.get("accuracy_ci95"),
               "position1_rate": pairwise.get("position1_rate"),
               "swap_consistency": pairwise.get("swap_consistency"),
               "swap_combined_accuracy": pairwise["swap_combined_accuracy"],
               "mean_tag_margin": pairwise["mean_tag_margin"],
               **{f"bon_{m}": bon[m]["overall"] for m in ("judge", "hybrid", "judge_swap", "hybrid_swap")}}
    return {"summary": summary, "pairwise": pairwise, "bon": bon, "bon_judge_calls": calls,
            "scored_prompts": len(scores)}

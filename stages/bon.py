"""bon: Best-of-N selection on one split for every policy in bon.policies (logic in daj.eval).

Writes metrics/bon.json ({policy: {method: {overall, easy, medium, hard, n}}}, pass@1 in %; methods random,
oracle, first, public_tests, judge and hybrid, daj.eval.bon),
metrics/bon_cost.json (judge calls and tokens per method and problem), metrics/bon_problems.csv (one
row per policy, problem and method), and the scaling plot data metrics/bon_scaling_n.csv,
metrics/bon_scaling_r.csv (wide: one overall-pass@1 column per method) and metrics/bon_scaling.json
(long form with the difficulties). The judge is judge.model plus the trained adapter models/judge
when that directory exists, else plus judge.adapter (or the bare base model when that is null).
"""

from __future__ import annotations

import csv
import io
import logging

from daj.config import ParamsConfig
from daj.data.pools import load_pools
from daj.errors import DajError
from daj.eval.bon import evaluate_policy
from daj.eval.scaling import scaling_n, scaling_r, wide
from daj.io import atomic_open, read_jsonl, write_json
from daj.judge.runner import build_runner
from daj.params import params_path
from daj.runlog import record, split_run_fields
from stages._main import judge_adapter

SPLITS_DIR = "data/splits"
METRICS = "metrics/bon.json"
COST = "metrics/bon_cost.json"
PROBLEMS_CSV = "metrics/bon_problems.csv"
SCALING_N = "metrics/bon_scaling_n.csv"
SCALING_R = "metrics/bon_scaling_r.csv"
SCALING_JSON = "metrics/bon_scaling.json"
DIFFICULTY_CSV = "metrics/bon_difficulty.csv"
log = logging.getLogger(__name__)


def write_csv(path: str, rows: list[dict]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(path) as fh:
        fh.write(buffer.getvalue())


def main(config: ParamsConfig) -> None:
    bon = config.bon
    seed, rounds, split, policies, sizes, share = (config.seed, bon.rounds, bon.split, bon.policies,
                                                    bon.scaling_n, bon.share_votes)
    scale_judge = bon.scaling_judge
    problems = read_jsonl(f"{SPLITS_DIR}/{split}.jsonl", required=("id", "difficulty"))
    if not problems:
        raise DajError(f"split {split!r} has no problems", path=f"{SPLITS_DIR}/{split}.jsonl")
    ids = [p["id"] for p in problems]
    pools = {policy: load_pools([policy], ids) for policy in policies}

    adapter = judge_adapter(config)
    log.info("judge: %s%s", config.judge.model, f" + {adapter}" if adapter else "")
    # the problem bar shows progress
    runner, _ = build_runner(config.judge, adapter, config.caches.judge, progress=False, where=str(params_path()))
    summary, cost, rows, long_n, long_r = {}, {}, [], [], []
    for policy in policies:
        result = evaluate_policy(policy, problems, pools[policy], runner, rounds, seed, share_votes=share)
        summary[policy] = result.summary
        cost[policy] = {"judge": {"model": config.judge.model, "adapter": adapter,
                                  "rounds": rounds, "split": split, "share_votes": share}, **result.cost}
        rows += result.rows
        largest = max((len(c) for c in pools[policy].values()), default=1)
        grid = sorted({min(s, largest) for s in sizes}) if sizes else list(range(1, largest + 1))

        def subset_judge(problem, subset, size, policy=policy):
            sub = evaluate_policy(policy, [problem], {problem["id"]: subset}, runner, rounds,
                                  seed + 7919 * size, progress=False, share_votes=share)
            return {m: sub.summary[m]["overall"] / 100.0 for m in ("judge", "hybrid")}

        long_n += scaling_n(policy, problems, pools[policy], grid, result.votes,
                            subset_judge if scale_judge else None, seed, progress=True)
        long_r += scaling_r(policy, problems, pools[policy], rounds, result.votes, seed)
        log.info("%s on %s (%d problems): %s", policy, split, len(problems),
                 ", ".join(f"{m} {v['overall']:.2f}" for m, v in result.summary.items()))
    runner.engine.close()
    write_json(METRICS, summary)
    cost_results, run = split_run_fields(cost)  # model calls vs cache hits: how this run went
    write_json(COST, cost_results)
    record("bon", run)
    write_csv(PROBLEMS_CSV, rows)
    write_csv(SCALING_N, wide(long_n, "n"))
    write_csv(SCALING_R, wide(long_r, "rounds"))
    write_json(SCALING_JSON, {"n": long_n, "rounds": long_r})
    write_csv(DIFFICULTY_CSV, difficulty_rows(summary))


def difficulty_rows(summary: dict) -> list[dict]:
    """The Best-of-N table in long form (policy, method, difficulty, pass@1) for a DVC bar plot."""
    return [{"policy": policy, "method": method, "difficulty": level, "pass1": scores[level]}
            for policy, methods in summary.items() for method, scores in methods.items()
            for level in ("overall", "easy", "medium", "hard") if level in scores]


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("bon", main)

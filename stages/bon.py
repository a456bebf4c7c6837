"""bon: Best-of-N selection on one split for every policy in bon.policies (logic in daj.eval).

Writes metrics/bon.json ({policy: {method: {overall, easy, medium, hard, n, ci95, ...}}}, pass@1 in %;
the methods of bon.methods, daj.eval.bon), metrics/bon_cost.json (model calls' tokens per method and
problem), metrics/bon_problems.csv (one row per policy, problem and method), the plot data
(daj.eval.plotdata: long CSVs with a `series` column and 95% intervals `lo`/`hi`)
metrics/bon_difficulty.csv (grouped bars), metrics/bon_scaling_n.csv and metrics/bon_scaling_r.csv
(curves against N and R), and metrics/bon_scaling.json (the curves with the difficulties). The judge is judge.model plus the trained adapter models/judge when that directory
exists, else plus judge.adapter (or the bare base model when that is null); prm and grm are the
reward models of bon.prm and bon.grm (daj.eval.reward_models). Model calls and cache hits go to
logs/bon.json.
"""

from __future__ import annotations

import logging

from daj import artifacts
from daj.config import ParamsConfig
from daj.data.pools import load_pools
from daj.errors import DajError
from daj.eval.bon import JUDGE_METHODS, evaluate_policy
from daj.eval.plotdata import curve_rows, difficulty_rows
from daj.eval.reward_models import make_scorers
from daj.eval.scaling import scaling_n, scaling_r
from daj.io import read_jsonl, write_csv, write_json
from daj.judge.runner import build_runner
from daj.params import params_path
from daj.preflight import check_judge
from daj.runlog import record, split_run_fields
from stages._main import judge_adapter

SPLITS_DIR, METRICS, COST = artifacts.SPLITS, artifacts.metrics("bon"), artifacts.metrics("bon_cost")
PROBLEMS_CSV = "metrics/bon_problems.csv"
SCALING_N = "metrics/bon_scaling_n.csv"
SCALING_R = "metrics/bon_scaling_r.csv"
SCALING_JSON = "metrics/bon_scaling.json"
DIFFICULTY_CSV = "metrics/bon_difficulty.csv"
log = logging.getLogger(__name__)


def main(config: ParamsConfig) -> None:
    adapter = judge_adapter(config)
    check_judge(config, str(params_path()), "bon", adapter)  # engines, servers, hub: before any work
    bon = config.bon
    seed, rounds, split, policies, sizes, share = (config.seed, bon.rounds, bon.split, bon.policies,
                                                    bon.scaling_n, bon.share_votes)
    methods, swap, reps = list(bon.methods), bon.swap, bon.bootstrap
    problems = read_jsonl(f"{SPLITS_DIR}/{split}.jsonl", required=("id", "difficulty"))
    if not problems:
        raise DajError(f"split {split!r} has no problems", path=f"{SPLITS_DIR}/{split}.jsonl")
    ids = [p["id"] for p in problems]
    pools = {policy: load_pools([policy], ids) for policy in policies}

    runner = None
    if any(m in JUDGE_METHODS for m in methods):
        log.info("judge: %s%s", config.judge.model, f" + {adapter}" if adapter else "")
        # the problem bar shows progress
        runner, _ = build_runner(config.judge, adapter, config.caches.judge, progress=False,
                                 where=str(params_path()))
    try:
        scorers = make_scorers(bon, config.caches.judge, seed)
    except DajError as e:
        raise e.at(path=str(params_path())) from None
    scale_judge = bon.scaling_judge and runner is not None and all(m in methods for m in JUDGE_METHODS)
    summary, cost, rows, long_n, long_r, bars = {}, {}, [], [], [], []
    for policy in policies:
        result = evaluate_policy(policy, problems, pools[policy], runner, rounds, seed, share_votes=share,
                                 methods=methods, swap=swap, scorers=scorers, bootstrap=reps)
        summary[policy] = result.summary
        cost[policy] = {**models_used(config, adapter, methods), **result.cost}
        rows += result.rows
        bars += difficulty_rows(policy, result.summary, problems, result.scores, seed, reps, len(policies) > 1)
        largest = max((len(c) for c in pools[policy].values()), default=1)
        grid = sorted({min(s, largest) for s in sizes}) if sizes else list(range(1, largest + 1))

        def subset_judge(problem, subset, size, policy=policy):
            sub = evaluate_policy(policy, [problem], {problem["id"]: subset}, runner, rounds,
                                  seed + 7919 * size, progress=False, share_votes=share, methods=JUDGE_METHODS,
                                  swap=swap)
            return {m: sub.summary[m]["overall"] / 100.0 for m in JUDGE_METHODS}

        scored = {m: result.score_lists[m] for m in result.score_lists}
        main_values = {m: result.scores[m] for m in scored}
        long_n += scaling_n(policy, problems, pools[policy], grid, result.votes,
                            subset_judge if scale_judge else None, seed, progress=True, scored=scored,
                            main=main_values, bootstrap=reps)
        if any(m in methods for m in JUDGE_METHODS):
            long_r += scaling_r(policy, problems, pools[policy], rounds, result.votes, seed, main=main_values,
                                bootstrap=reps)
        log.info("%s on %s (%d problems): %s", policy, split, len(problems),
                 ", ".join(f"{m} {v['overall']:.2f}" for m, v in result.summary.items()))
    if runner is not None:
        runner.engine.close()
    for scorer in scorers.values():
        scorer.close()
    write_json(METRICS, summary)
    cost_results, run = split_run_fields(cost)  # model calls vs cache hits: how this run went
    write_json(COST, cost_results)
    record("bon", run)
    write_csv(PROBLEMS_CSV, rows)
    write_csv(SCALING_N, curve_rows(long_n, "n", len(policies) > 1), ("n", "series", "pass1", "lo", "hi"))
    write_csv(SCALING_R, curve_rows(long_r, "rounds", len(policies) > 1), ("rounds", "series", "pass1", "lo", "hi"))
    write_json(SCALING_JSON, {"n": long_n, "rounds": long_r})
    write_csv(DIFFICULTY_CSV, bars, ("difficulty", "series", "pass1", "lo", "hi"))


def models_used(config: ParamsConfig, adapter: str | None, methods: list[str]) -> dict:
    """Which models answered, for the cost file: the judge's, and the reward models' of prm / grm."""
    bon, out = config.bon, {}
    if any(m in JUDGE_METHODS for m in methods):
        out["judge"] = {"model": config.judge.model, "adapter": adapter, "rounds": bon.rounds, "split": bon.split,
                        "share_votes": bon.share_votes, **({"swap": True} if bon.swap else {})}
    if "prm" in methods:
        out["prm"] = {"backend": bon.prm.backend, "model": bon.prm.model, "aggregation": bon.prm.aggregation,
                      "step": bon.prm.step, "random_head_seed": bon.prm.random_head_seed}
    if "grm" in methods:
        out["grm"] = {"backend": bon.grm.backend, "model": bon.grm.model, "adapter": bon.grm.adapter,
                      "samples": bon.grm.samples}
    return out


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("bon", main)

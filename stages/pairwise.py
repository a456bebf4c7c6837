"""pairwise: accuracy of the base and the trained judge on mixed pairs of one split (logic in daj.eval.pairwise).

Reads data/splits/<bon.split>.jsonl and the candidates and verdicts of bon.policies (pooled per
problem), builds the mixed (pass, fail) pairs in both orders (at most
pairwise.max_pairs_per_problem pairs per problem, seeded), and asks each judge pairwise.responses_per_pair
times per ordered pair (metrics averaged over the responses, daj.eval.pairwise):
  base     judge.model without adapter
  trained  judge.model + models/judge (the train stage's adapter) when that directory exists, else
           + judge.adapter when set; absent when neither exists
Writes metrics/pairwise.json: {"split", "policies", "max_pairs_per_problem", "responses_per_pair", "swap",
"judges": {"base": {...}, "trained": {...}}} with the metrics of daj.eval.pairwise per judge (accuracy with
its 95% bootstrap interval over problems, per order, position-1 rate, swap consistency, ...), plus its
model and adapter. With bon.swap, each judge also gets "swap": the metrics of its swap-combined answers
(both orders of a pair scored and combined, daj.judge.swap; the same judge calls, no further one), and
the log its seconds.

The judge cache is keyed by the engine name, which carries content digests of the model and adapter
(daj.judge.runner.judge_name), so a retrained adapter at the same path is never answered from an older
adapter's cache.
"""

from __future__ import annotations

import logging

from daj import artifacts
from daj.config import ParamsConfig
from daj.data.pools import load_pools
from daj.eval.pairwise import evaluate_judge, runner_select, swap_select
from daj.io import read_jsonl, write_json
from daj.judge.pairs import pair_prompts
from daj.judge.runner import build_runner
from daj.params import params_path
from daj.preflight import check_judge
from daj.runlog import record, split_run_fields
from stages._main import judge_adapter

SPLITS_DIR, METRICS = artifacts.SPLITS, artifacts.metrics("pairwise")
log = logging.getLogger(__name__)


def main(config: ParamsConfig) -> None:
    adapter = judge_adapter(config)
    check_judge(config, str(params_path()), "pairwise", adapter)  # engines, servers, hub: before any work
    seed, split, policies = config.seed, config.bon.split, config.bon.policies
    max_pairs, responses = config.pairwise.max_pairs_per_problem, config.pairwise.responses_per_pair
    problems = read_jsonl(f"{SPLITS_DIR}/{split}.jsonl", required=("id", "difficulty"))
    pools = load_pools(policies, [p["id"] for p in problems])
    prompts = pair_prompts(split, problems, pools, max_pairs, seed)
    log.info("%s: %d problems, %d mixed pairs (%d ordered prompts)", split, len(problems), len(prompts) // 2,
             len(prompts))
    judges = {"base": None}
    if adapter:
        judges["trained"] = adapter
    out = {}
    for name, adapter in judges.items():
        runner, _ = build_runner(config.judge, adapter, config.caches.judge, where=str(params_path()))
        try:
            metrics = evaluate_judge(prompts, runner_select(runner, seed, responses))
            if config.bon.swap:
                metrics["swap"] = evaluate_judge(prompts, swap_select(runner, seed, responses), combined=True)
        finally:
            runner.engine.close()
        out[name] = {"model": config.judge.model, "adapter": adapter, **metrics}
        ci = metrics.get("accuracy_ci95")
        log.info("%s judge: accuracy %s (95%% CI %s), position-1 rate %s, swap consistency %s, format errors %s "
                 "(%.1f s)", name, _fmt(metrics["accuracy"]), "n/a" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}",
                 _fmt(metrics["position1_rate"]), _fmt(metrics["swap_consistency"]),
                 _fmt(metrics["format_error_rate"]), metrics["seconds"])
        if "swap" in metrics:
            log.info("%s judge, both orders combined: accuracy %s, ties %s", name, _fmt(metrics["swap"]["accuracy"]),
                     _fmt(metrics["swap"]["tie_rate"]))
    results, run = split_run_fields(out)  # seconds and cache hits: how this run went
    write_json(METRICS, {"split": split, "policies": list(policies), "max_pairs_per_problem": max_pairs,
                         "responses_per_pair": responses, "swap": config.bon.swap, "judges": results})
    record("pairwise", run)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("pairwise", main)

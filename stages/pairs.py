"""pairs: judge training data from the lower and upper splits (logic in daj.judge.pairs).

Reads data/splits/{lower,upper}.jsonl, data/candidates/<policy>.jsonl and data/verdicts/<policy>.jsonl
for pairs.lower_policies / pairs.upper_policies; writes data/pairs/{lower,upper}.jsonl (preference
records), data/pairs/{lower,upper}_scored.jsonl (every scored rollout) and metrics/pairs.json.
pairs.max_problems caps the problems judged per split (null, one int for both, or {lower, upper}).
pairs.lower_trajectories / pairs.upper_trajectories name who writes each level's judge responses
(null = the judge; daj.judge.trajectories); records carry `trajectory_model`, and metrics/pairs.json
lists the policies and trajectory models of each level.
"""

from __future__ import annotations

import logging

from daj import artifacts
from daj.config import ParamsConfig
from daj.data.pools import load_pools
from daj.io import atomic_dir, read_jsonl, write_json, write_jsonl
from daj.judge.pairs import Writer, choose_problems, judge_pairs, pair_prompts
from daj.judge.trajectories import TrajectoryRunners, parse_trajectories
from daj.params import params_path
from daj.preflight import check_judge
from daj.runlog import record, split_run_fields

SPLITS_DIR, OUT_DIR, METRICS = artifacts.SPLITS, artifacts.PAIRS, artifacts.metrics("pairs")


def main(config: ParamsConfig) -> None:
    check_judge(config, str(params_path()), "pairs", config.judge.adapter)  # engines, servers, hub: before any work
    seed, pairs, where = config.seed, config.pairs, str(params_path())
    caps = pairs.problem_caps()
    judge_spec = config.judge.engine_spec(config.judge.adapter)
    work = {}
    for split in ("lower", "upper"):
        problems = read_jsonl(f"{SPLITS_DIR}/{split}.jsonl", required=("id", "domain"))
        policies = pairs.policies(split)
        models = parse_trajectories(config, split, where)
        pools = load_pools(policies, [p["id"] for p in problems])
        chosen, counts = choose_problems(split, problems, pools, caps[split], seed)
        work[split] = (policies, models, {"max_problems": caps[split], **counts},
                       pair_prompts(split, chosen, pools, pairs.max_pairs_per_problem, seed))
    runners = TrajectoryRunners(config, {split: w[1] for split, w in work.items()}, where)
    metrics = {}
    try:
        tokenizer = runners.tokenizer()
        with atomic_dir(OUT_DIR) as tmp:
            for split, (policies, models, counts, prompts) in work.items():
                writers = [Writer(m.name, lambda m=m: runners.runner(m), seed if m.seed is None else m.seed,
                                  done=lambda m=m, split=split: runners.release(split, m)) for m in models]
                result = judge_pairs(split, prompts, writers, tokenizer, pairs.responses_per_pair, config.reward,
                                     seed, max_chars=config.judge.max_prompt_chars)
                write_jsonl(tmp / f"{split}.jsonl", result.records)
                write_jsonl(tmp / f"{split}_scored.jsonl", result.scored)
                metrics[split] = {"policies": policies, "trajectory_models": [m.describe(judge_spec) for m in models],
                                  **counts, **result.metrics}
                logging.getLogger().info("%s: %d pairs, %d preference records, judge accuracy %.3f, format errors "
                                         "%.3f (raw %.3f), written by %s", split, result.metrics["pairs"],
                                         result.metrics["preference_records"], result.metrics["judge_accuracy"],
                                         result.metrics["format_error_rate"], result.metrics["raw_format_error_rate"],
                                         ", ".join(m.name for m in models))
    finally:
        runners.close()
    results, run = split_run_fields(metrics)  # model calls vs cache hits: how this run went
    write_json(METRICS, results)
    record("pairs", run)


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("pairs", main)

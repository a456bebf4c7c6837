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

from daj.data.pools import load_pools
from daj.errors import DajError
from daj.io import atomic_dir, read_jsonl, write_json, write_jsonl
from daj.judge.pairs import Writer, choose_problems, judge_pairs, pair_prompts
from daj.judge.reward import RewardLevels
from daj.judge.runner import JudgeSettings, judge_engine_spec
from daj.judge.trajectories import TrajectoryRunners, parse_trajectories
from daj.params import Params
from daj.runlog import record, split_run_fields
from stages._main import policy_list, positive_int

SPLITS_DIR = "data/splits"
OUT_DIR = "data/pairs"
METRICS = "metrics/pairs.json"


def max_problems_per_split(params: Params) -> dict[str, int | None]:
    """pairs.max_problems: null (no cap), a positive int (both splits) or {lower: int|null, upper: int|null}."""
    key = "pairs.max_problems"
    value = params.get_path(key, None)
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"lower", "upper"})
        if unknown:
            raise DajError(f"unknown split {unknown[0]!r} (expected lower, upper)", path=params.path,
                           field=f"{key}.{unknown[0]}")
        return {split: positive_int(params, f"{key}.{split}", allow_none=True) for split in ("lower", "upper")}
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DajError(f"expected null, a positive integer or {{lower: int|null, upper: int|null}}, got {value!r}",
                       path=params.path, field=key)
    return {"lower": value, "upper": value}


def main(params: Params) -> None:
    seed = int(params.get_path("seed"))
    max_pairs = positive_int(params, "pairs.max_pairs_per_problem", allow_none=True)
    responses = positive_int(params, "pairs.responses_per_pair")
    levels = RewardLevels.from_params(params)
    caps = max_problems_per_split(params)
    settings = JudgeSettings.from_params(params)
    judge_spec = judge_engine_spec(params, params.get_path("judge.adapter", None))
    work = {}
    for split in ("lower", "upper"):
        problems = read_jsonl(f"{SPLITS_DIR}/{split}.jsonl", required=("id", "domain"))
        policies = policy_list(params, f"pairs.{split}_policies")
        models = parse_trajectories(params, split, settings)
        pools = load_pools(policies, [p["id"] for p in problems])
        chosen, counts = choose_problems(split, problems, pools, caps[split], seed)
        work[split] = (policies, models, {"max_problems": caps[split], **counts},
                       pair_prompts(split, chosen, pools, max_pairs, seed))
    runners = TrajectoryRunners(params, settings, {split: w[1] for split, w in work.items()})
    metrics = {}
    try:
        tokenizer = runners.tokenizer()
        with atomic_dir(OUT_DIR) as tmp:
            for split, (policies, models, counts, prompts) in work.items():
                writers = [Writer(m.name, lambda m=m: runners.runner(m), seed if m.seed is None else m.seed,
                                  done=lambda m=m, split=split: runners.release(split, m)) for m in models]
                result = judge_pairs(split, prompts, writers, tokenizer, responses, levels, seed,
                                     max_chars=settings.max_prompt_chars)
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

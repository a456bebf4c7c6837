"""train: fine-tune the judge (LoRA) on the lower pairs, reweighted by the upper (meta) pairs.

Reads data/pairs/{lower,upper}.jsonl (and *_scored.jsonl for kto/grpo) and the base judge
`judge.model`; writes models/judge/ (PEFT adapter + tokenizer), metrics/train.json
and plot data under metrics/train/, a resumable checkpoint in models/ckpt/, and its timings to
logs/train.json. Online GRPO draws its rollouts from the judge being trained (daj.train.online).
"""

from __future__ import annotations

import logging

from daj import artifacts
from daj.config import ParamsConfig

PAIRS, JUDGE_OUT, CKPT = artifacts.PAIRS, artifacts.JUDGE_ADAPTER, artifacts.CHECKPOINT
METRICS, METRICS_DIR = artifacts.metrics("train"), artifacts.TRAIN_CURVES


def main(config: ParamsConfig) -> None:
    from daj.models.loading import check_model_ref
    from daj.params import params_path
    from daj.preflight import check_judge

    tr = config.train
    online = tr.objective == "grpo" and tr.grpo_mode == "online"
    # train loads judge.model here; online GRPO with a server also needs that server (before any work)
    if online and config.judge.backend != "hf":
        check_judge(config, str(params_path()), "train")
    else:
        check_model_ref(config.judge.model, field="judge.model", path=str(params_path()))
    from daj.runlog import record
    from daj.train.run import run, summary, timings

    factory = None
    if online:
        from daj.train.online import rollout_sampler_factory

        factory = rollout_sampler_factory(config.judge, config.reward, tr.rollout_adapter_dir, str(params_path()))
    result = run(tr, PAIRS, reweight=config.reweight, seed=config.seed, model=config.judge.model,
                 temperature=config.judge.temperature, ref_cache_dir=config.caches.train_ref, judge_out=JUDGE_OUT,
                 metrics_json=METRICS, metrics_dir=METRICS_DIR, ckpt_dir=CKPT, sampler_factory=factory)
    s, t = summary(tr, result), timings(result)
    record("train", t)
    logging.getLogger().info("%s/%s: %d iterations (%d optimizer steps), final loss %.4f, meta loss %.4f, "
                             "meta acc %.3f, %.3f s/optimizer step, peak RSS %.0f MiB", s["objective"],
                             s["reweight"], s["steps"], s["optimizer_steps"], s["final_loss"], s["meta_loss"],
                             s["meta_acc"], t["seconds_per_step"], t["peak_rss_mb"])


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("train", main)

"""One judge-training run from files: load the base model, add LoRA, build the data, train, write out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from daj.config import TrainConfig
from daj.errors import DajError
from daj.hashing import file_digest
from daj.io import atomic_dir, write_json

if TYPE_CHECKING:
    from daj.train.bilevel import RunResult
    from daj.train.rollouts import SamplerFactory

log = logging.getLogger(__name__)


def run(cfg: TrainConfig, pairs_dir: str | Path, *, reweight: str, seed: int, model: str,
        temperature: float = 1.0, ref_cache_dir: str | None = None, judge_out: str | Path | None = None,
        metrics_json: str | Path | None = None, metrics_dir: str | Path | None = None,
        ckpt_dir: str | Path | None = None, progress: bool = True,
        sampler_factory: SamplerFactory | None = None) -> RunResult:
    """Train a LoRA judge on base `model` (a checkpoint reference, as judge.model) from
    pairs_dir/{lower,upper}.jsonl (and *_scored.jsonl for kto/grpo), reweighted by `reweight`.

    `temperature` is the rollouts' sampling temperature (judge.temperature), at which GRPO scores them;
    the preference objectives ignore it. `ref_cache_dir` keeps reference log-probs across runs
    (caches.train_ref; None = off). Online GRPO (cfg.grpo_mode) needs `sampler_factory`
    (daj.train.online.rollout_sampler_factory): it receives the in-memory model being trained and its
    tokenizer. Writes judge_out (PEFT adapter + tokenizer, atomically), metrics_json (summary),
    metrics_dir (plot CSVs and PNGs under curves/) when given."""
    from daj.models.loading import load_causal_lm
    from daj.train.bilevel import train
    from daj.train.data import PreferenceData, domains_of, read_pairs, read_scored
    from daj.train.lora import add_lora, save_adapter
    from daj.train.losses import make_objective
    from daj.train.weights import make_weight_model

    torch.manual_seed(seed)
    pairs_dir = Path(pairs_dir)
    lower_pairs, upper_pairs = read_pairs(pairs_dir / "lower.jsonl"), read_pairs(pairs_dir / "upper.jsonl")
    files = [pairs_dir / "lower.jsonl", pairs_dir / "upper.jsonl"]
    if cfg.objective in ("kto", "grpo"):
        files += [pairs_dir / "lower_scored.jsonl", pairs_dir / "upper_scored.jsonl"]
        lower_rows, upper_rows = read_scored(files[2]), read_scored(files[3])
    else:
        lower_rows, upper_rows = lower_pairs, upper_pairs
    judge, tokenizer = load_causal_lm(model, dtype=cfg.precision)
    judge.config.use_cache = False
    judge = add_lora(judge, cfg.lora_r, cfg.lora_alpha, list(cfg.lora_targets), seed=seed)
    judge.train()
    domains = domains_of(lower_rows)
    mk = lambda obj, rows: PreferenceData(obj, tokenizer, cfg.max_length, rows, domains,  # noqa: E731
                                          grpo_group=cfg.grpo_group, seed=seed, temperature=temperature)
    online = cfg.objective == "grpo" and cfg.grpo_mode == "online"
    sampler = None
    if online:
        from daj.train.rollouts import PromptData

        if sampler_factory is None:
            raise DajError("online GRPO needs a rollout sampler (daj.train.online builds it from the judge)",
                           field="train.grpo_mode")
        lower, upper = (PromptData(tokenizer, cfg.max_length, rows, domains) for rows in (lower_rows, upper_rows))
        sampler = sampler_factory(judge, tokenizer)
    else:
        lower, upper = mk(cfg.objective, lower_rows), mk(cfg.objective, upper_rows)
    eval_pairs = mk("dpo", upper_pairs)
    weight_model = make_weight_model(reweight, domains, len(lower.instance_ids), seed=seed, param=cfg.weight_param)
    objective = make_objective(cfg.objective, cfg.beta, cfg.grpo_clip, cfg.grpo_kl, temperature=temperature)
    log.info("%s/%s: %d lower units (%d instances, domains %s), %d upper units, %d meta pairs", cfg.objective,
             reweight, len(lower), len(lower.instance_ids), ", ".join(domains), len(upper), len(eval_pairs))
    extra = {"model": model, "temperature": temperature, "data": {f.name: file_digest(f) for f in files}}
    store = None
    if ref_cache_dir:
        from daj.train.refcache import ReferenceStore, model_key

        key = model_key(model, cfg.precision, "cuda" if torch.cuda.is_available() else "cpu")
        store = ReferenceStore(ref_cache_dir, key) if key else None
    try:
        result = train(judge, objective, weight_model, lower, upper, eval_pairs, cfg, seed, ckpt_dir=ckpt_dir,
                       fingerprint_extra=extra, progress=progress, ref_store=store, sampler=sampler)
    finally:
        if store is not None:
            log.info("reference log-probs: %d from %s, %d computed", store.hits, ref_cache_dir, store.misses)
            store.close()
    if metrics_dir is not None:
        from daj.train.plots import write_plots

        # Rewritten whole, atomically (a resumed run's history holds every step, so its curves equal a
        # straight run's, and no file of an earlier run lingers). Only step-indexed plot data in curves/,
        # so DVC can plot the folder; the final per-instance weights (a mapping) go beside it.
        with atomic_dir(metrics_dir) as tmp:
            write_plots(result.history, tmp / "curves", cfg.objective, reweight)
            if result.final.get("instance_weights") is not None:
                write_json(tmp / "instance_weights.json", result.final["instance_weights"])
    if judge_out is not None:
        with atomic_dir(judge_out) as tmp:
            save_adapter(judge, tokenizer, tmp)
    if metrics_json is not None:
        write_json(metrics_json, summary(cfg, result))
    return result


def summary(cfg: TrainConfig, result: RunResult) -> dict:
    """metrics/train.json: the contract fields plus meta accuracy (results only: see `timings`)."""
    f = result.final
    out = {"objective": cfg.objective, "reweight": result.reweight, "steps": cfg.steps,
           "optimizer_steps": cfg.optimizer_steps,
           "final_loss": f["unweighted_loss"], "final_weighted_loss": f["loss"], "meta_loss": f["meta_loss"],
           "meta_acc": f["meta_acc"], "meta_reward_acc": f["meta_reward_acc"]}
    for key in ("meta_reward", "rollouts"):  # online GRPO
        if key in f:
            out[key] = f[key]
    if result.reweight == "domain":
        out["domain_weights"] = f["domain_weights"]
    if "instance_spread" in f:
        out["instance_weight_spread"] = f["instance_spread"]
    return out


def timings(result: RunResult) -> dict:
    """How the run went (differs from run to run): seconds per optimizer step and peak memory."""
    f = result.final
    return {k: f[k] for k in ("seconds_per_step", "peak_rss_mb", "peak_gpu_mb") if k in f}

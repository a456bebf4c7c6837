"""One judge-training run from files: load the base model, add LoRA, build the data, train, write out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from daj.config import ParamsConfig
from daj.errors import DajError
from daj.io import atomic_dir, write_json

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """Model and loss settings that are not part of the Betty loop's TrainConfig."""

    model: str = "models/tiny"
    precision: str = "fp32"
    max_length: int = 1024
    beta: float = 0.1
    grpo_group: int = 4           # as params.yaml (the paper preset sets 16)
    grpo_mode: str = "online"     # online: groups drawn from the current judge every step; offline: *_scored.jsonl
    grpo_clip: float = 0.2
    grpo_kl: float = 0.0
    temperature: float = 0.7      # the judge's sampling temperature (judge.temperature): GRPO scores its rollouts at it
    lora_r: int = 32
    lora_alpha: int = 64
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                              "up_proj", "down_proj"])
    ref_cache_dir: str | None = None


def from_params(config: ParamsConfig):
    """(bilevel TrainConfig, RunOptions) from the typed params."""
    from daj.train.bilevel import TrainConfig

    tr = config.train
    cfg = TrainConfig(objective=tr.objective, reweight=config.reweight, steps=tr.steps, lr=tr.lr,
                      meta_lr=tr.meta_lr, grad_accum=tr.grad_accum, meta_grad_accum=tr.meta_grad_accum,
                      meta_every=tr.meta_every, batch_size=tr.batch_size, meta_batch_size=tr.meta_batch_size,
                      darts_alpha=tr.darts_alpha, eval_every=tr.eval_every, ckpt_every=tr.ckpt_every,
                      seed=config.seed)
    opts = RunOptions(model=config.judge.model, precision=tr.precision, max_length=tr.max_length, beta=tr.beta,
                      grpo_group=tr.grpo_group, grpo_mode=tr.grpo_mode, grpo_clip=tr.grpo_clip, grpo_kl=tr.grpo_kl,
                      lora_r=tr.lora_r, lora_alpha=tr.lora_alpha, lora_targets=list(tr.lora_targets),
                      ref_cache_dir=config.caches.train_ref)
    return cfg, opts


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run(cfg, opts: RunOptions, pairs_dir: str | Path, judge_out: str | Path | None = None,
        metrics_json: str | Path | None = None, metrics_dir: str | Path | None = None,
        ckpt_dir: str | Path | None = None, progress: bool = True, sampler_factory=None):
    """Train a judge on pairs_dir/{lower,upper}.jsonl (and *_scored.jsonl for kto/grpo).

    Online GRPO (opts.grpo_mode) needs `sampler_factory` (daj.train.rollouts.SamplerFactory): the
    composition root builds it from the judge's prompt and reward code; it receives the in-memory
    model being trained and its tokenizer. Writes judge_out (PEFT adapter + tokenizer, atomically),
    metrics_json (summary), metrics_dir (dvclive logs, plot CSVs and PNGs) when given. Returns the
    RunResult."""
    from daj.models.loading import load_causal_lm
    from daj.train.bilevel import train
    from daj.train.data import PreferenceData, domains_of, read_pairs, read_scored
    from daj.train.lora import add_lora, save_adapter
    from daj.train.losses import make_objective
    from daj.train.weights import make_weight_model

    torch.manual_seed(cfg.seed)
    pairs_dir = Path(pairs_dir)
    lower_pairs, upper_pairs = read_pairs(pairs_dir / "lower.jsonl"), read_pairs(pairs_dir / "upper.jsonl")
    files = [pairs_dir / "lower.jsonl", pairs_dir / "upper.jsonl"]
    if cfg.objective in ("kto", "grpo"):
        files += [pairs_dir / "lower_scored.jsonl", pairs_dir / "upper_scored.jsonl"]
        lower_rows, upper_rows = read_scored(files[2]), read_scored(files[3])
    else:
        lower_rows, upper_rows = lower_pairs, upper_pairs
    model, tokenizer = load_causal_lm(opts.model, dtype=opts.precision)
    model.config.use_cache = False
    model = add_lora(model, opts.lora_r, opts.lora_alpha, opts.lora_targets, seed=cfg.seed)
    model.train()
    domains = domains_of(lower_rows)
    mk = lambda obj, rows: PreferenceData(obj, tokenizer, opts.max_length, rows, domains,  # noqa: E731
                                          grpo_group=opts.grpo_group, seed=cfg.seed, temperature=opts.temperature)
    online = cfg.objective == "grpo" and opts.grpo_mode == "online"
    sampler = None
    if online:
        from daj.train.rollouts import PromptData

        if sampler_factory is None:
            raise DajError("online GRPO needs a rollout sampler (stages/train.py builds it from the judge)",
                           field="train.grpo_mode")
        lower, upper = (PromptData(tokenizer, opts.max_length, rows, domains) for rows in (lower_rows, upper_rows))
        sampler = sampler_factory(model, tokenizer)
    else:
        lower, upper = mk(cfg.objective, lower_rows), mk(cfg.objective, upper_rows)
    eval_pairs = mk("dpo", upper_pairs)
    weight_model = make_weight_model(cfg.reweight, domains, len(lower.instance_ids), seed=cfg.seed,
                                     param=cfg.weight_param)
    objective = make_objective(cfg.objective, opts.beta, opts.grpo_clip, opts.grpo_kl, temperature=opts.temperature)
    log.info("%s/%s: %d lower units (%d instances, domains %s), %d upper units, %d meta pairs", cfg.objective,
             cfg.reweight, len(lower), len(lower.instance_ids), ", ".join(domains), len(upper), len(eval_pairs))
    extra = {"model": opts.model, "opts": vars(opts), "data": {f.name: _file_digest(f) for f in files}}
    live = None
    if metrics_dir is not None:
        import shutil

        from dvclive import Live

        # Always a fresh log: a resumed run replays its checkpointed history into it first (train()),
        # so its curves equal a straight run's and no plot data of an earlier run lingers.
        shutil.rmtree(metrics_dir, ignore_errors=True)
        live = Live(dir=str(metrics_dir), resume=False, save_dvc_exp=False, dvcyaml=None, report=None)
    store = None
    if opts.ref_cache_dir:
        from daj.train.refcache import ReferenceStore, model_key

        key = model_key(opts.model, opts.precision)
        store = ReferenceStore(opts.ref_cache_dir, key) if key else None
    try:
        result = train(model, objective, weight_model, lower, upper, eval_pairs, cfg, ckpt_dir=ckpt_dir,
                       fingerprint_extra=extra, live=live, progress=progress, ref_store=store, sampler=sampler,
                       grpo_group=opts.grpo_group)
    finally:
        if live is not None:
            live.end()
        if store is not None:
            log.info("reference log-probs: %d from %s, %d computed", store.hits, opts.ref_cache_dir, store.misses)
            store.close()
    if metrics_dir is not None:
        from daj.train.plots import write_plots

        # a subfolder of its own holding only step-indexed plot data, so DVC can plot the whole folder;
        # the final per-instance weights (a mapping, not plot rows) go beside it
        write_plots(result.history, Path(metrics_dir) / "curves", cfg.reweight)
        if result.final.get("instance_weights") is not None:
            write_json(Path(metrics_dir) / "instance_weights.json", result.final["instance_weights"])
    if judge_out is not None:
        with atomic_dir(judge_out) as tmp:
            save_adapter(model, tokenizer, tmp)
    if metrics_json is not None:
        write_json(metrics_json, summary(cfg, result))
    return result


def summary(cfg, result) -> dict:
    """metrics/train.json: the contract fields plus meta accuracy (results only: see `timings`)."""
    f = result.final
    out = {"objective": cfg.objective, "reweight": cfg.reweight, "steps": cfg.steps,
           "optimizer_steps": cfg.optimizer_steps,
           "final_loss": f["unweighted_loss"], "final_weighted_loss": f["loss"], "meta_loss": f["meta_loss"],
           "meta_acc": f["meta_acc"], "meta_reward_acc": f["meta_reward_acc"]}
    for key in ("meta_reward", "rollouts"):  # online GRPO
        if key in f:
            out[key] = f[key]
    if cfg.reweight == "domain":
        out["domain_weights"] = f["domain_weights"]
    if "instance_spread" in f:
        out["instance_weight_spread"] = f["instance_spread"]
    return out


def timings(result) -> dict:
    """How the run went (differs from run to run): seconds per optimizer step and peak memory."""
    f = result.final
    return {k: f[k] for k in ("seconds_per_step", "peak_rss_mb", "peak_gpu_mb") if k in f}

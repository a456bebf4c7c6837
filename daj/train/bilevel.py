"""The bi-level loop on Betty (betty-ml 0.2.1): the judge below, the weight model above.

  lower ("judge")       PEFT LoRA judge; loss = mean_i w_i * l_i on the lower data, where l_i are the
                        per-sample losses (daj.train.losses) and w_i come from the weight model.
  upper ("reweighter")  the weight model; loss = unweighted mean loss of the judge on the upper
                        (meta) data. Its gradient is Betty's one-step unrolled `darts` hypergradient:
                        a finite difference that re-runs the judge's last training step at
                        theta +- eps * dL_meta/dtheta, so that step is deterministic (no dropout, no
                        sampling; GRPO rollouts come with the batch).
reweight=none runs the same judge problem alone in a Betty engine (weights 1, no upper level).
Both levels use torch.optim.Adam (Betty rebuilds optimizers as cls(params, **defaults); AdamW breaks).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from daj.config import TrainConfig
from daj.deps import require_betty
from daj.hashing import stable_seed
from daj.train.data import BatchStream, PreferenceData, to_device
from daj.train.logprobs import sequence_logps
from daj.train.losses import Objective, dpo_losses
from daj.train.rollouts import PromptData, RolloutStream, Sampler
from daj.train.weights import WeightModel

log = logging.getLogger(__name__)
betty = require_betty()
from betty.configs import Config, EngineConfig  # noqa: E402
from betty.engine import Engine  # noqa: E402
from betty.logging.logger_base import get_logger as _betty_logger  # noqa: E402
from betty.problems import ImplicitProblem  # noqa: E402

_betty_logger().setLevel(logging.WARNING)

LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]


def run_identity(cfg: TrainConfig, seed: int, reweight: str, extra: dict) -> str:
    """Identity of a run for resuming: every setting that changes the result (not `steps`, so a
    resumed run may train longer; not where checkpoints, evaluations or caches go)."""
    settings = cfg.model_dump(exclude={"steps", "eval_every", "ckpt_every", "rollout_adapter_dir"})
    blob = json.dumps({"cfg": settings, "seed": seed, "reweight": reweight, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class JudgeProblem(ImplicitProblem):
    """Lower level: weighted per-sample loss of the judge. Weights come from the `reweighter` problem
    when the engine has one (Betty sets it as an attribute), else they are 1."""

    def __init__(self, name, config, module, optimizer, train_data_loader, loss_fn: LossFn):
        super().__init__(name, config, module=module, optimizer=optimizer, train_data_loader=train_data_loader)
        self.loss_fn = loss_fn
        self.records: list[dict] = []

    _real_step = False

    def training_step(self, batch):
        # Betty's darts re-runs this step only to differentiate w.r.t. the weight model's parameters
        # (sum_i dw_i/dlambda * l_i), so there the per-sample losses need no graph: computing them
        # without one halves the peak memory of a bi-level step (measured: 69 -> ~38 GB at 1.7B).
        with contextlib.nullcontext() if self._real_step else torch.no_grad():
            losses = self.loss_fn(self.module, batch)
        if hasattr(self, "reweighter"):
            weights = self.reweighter(batch["index"], batch["domain"], losses.detach())
        else:
            weights = torch.ones_like(losses)
        # Betty's darts re-runs this step and needs a tensor back; the statistics of the real step are
        # picked up by get_loss() below (re-runs overwrite them only after they were read).
        self._stats = {"unweighted": losses.detach().mean().item(), "weights": weights.detach().cpu(),
                       "index": batch["index"].cpu(), "domain": batch["domain"].cpu()}
        if "rewards" in batch:  # online GRPO: the group drawn for this step
            self._stats["rollout_reward"] = float(batch["rewards"].mean())
            self._stats["rollout_responses"] = int(batch["rewards"].numel())
        return (weights * losses).mean()

    def get_loss(self, batch):
        self._real_step = True
        try:
            loss, loss_dict = super().get_loss(batch)
        finally:
            self._real_step = False
        loss_dict.update(self._stats)
        return loss, loss_dict

    def trainable_parameters(self):
        return [p for p in self.module.parameters() if p.requires_grad]

    def log(self, stats, global_step):  # Betty calls this once per real step (not in darts re-runs)
        self.records.append(stats)


class ReweightProblem(ImplicitProblem):
    """Upper level: unweighted loss of the judge on the meta data; its parameters are the weight model."""

    def __init__(self, name, config, module, optimizer, train_data_loader, loss_fn: LossFn):
        super().__init__(name, config, module=module, optimizer=optimizer, train_data_loader=train_data_loader)
        self.loss_fn = loss_fn
        self.records: list[dict] = []
        self.last_hypergrad: list[torch.Tensor] | None = None

    def training_step(self, batch):
        return self.loss_fn(self.judge.module, batch).mean()

    def trainable_parameters(self):
        return [p for p in self.module.parameters() if p.requires_grad]

    def param_callback(self):
        """Betty calls this right after each upper optimizer step: keep the weights feasible (the paper
        parametrisation projects alpha onto >= 0; daj.train.weights)."""
        self.module.project()

    def grad_callback(self):
        self.last_hypergrad = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                               for p in self.trainable_parameters()]

    def log(self, stats, global_step):
        self.records.append(stats)


def build_engine(judge_module, weight_model: WeightModel, lower_loader, upper_loader, loss_fn: LossFn,
                 cfg: TrainConfig, lower_opt: type = torch.optim.Adam, upper_opt: type = torch.optim.Adam,
                 meta_loss_fn: LossFn | None = None):
    """Betty engine with the judge (and the reweighter unless the weight model is `none`)."""
    trainable = [p for p in judge_module.parameters() if p.requires_grad]
    lower_cfg = Config(type="darts", unroll_steps=cfg.meta_every, gradient_accumulation=cfg.grad_accum,
                       darts_alpha=cfg.darts_alpha, log_step=1)
    judge = JudgeProblem("judge", lower_cfg, judge_module, lower_opt(trainable, lr=cfg.lr), lower_loader, loss_fn)
    problems, deps = [judge], {"u2l": {}, "l2u": {}}
    reweighter = None
    if weight_model.kind != "none":
        upper_cfg = Config(type="darts", gradient_accumulation=cfg.meta_grad_accum, log_step=1)
        meta_params = list(weight_model.parameters())
        reweighter = ReweightProblem("reweighter", upper_cfg, weight_model, upper_opt(meta_params, lr=cfg.meta_lr),
                                     upper_loader, meta_loss_fn or loss_fn)
        problems.append(reweighter)
        deps = {"u2l": {reweighter: [judge]}, "l2u": {judge: [reweighter]}}
    strategy = "gpu" if torch.cuda.is_available() else "cpu"
    engine = Engine(problems=problems, config=EngineConfig(train_iters=1, logger_type="none", strategy=strategy),
                    dependencies=deps)
    return engine, judge, reweighter


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


EVAL_KEYS = ("meta_loss", "meta_acc", "meta_reward_acc", "meta_margin", "meta_reward")  # what evaluate() returns


@torch.no_grad()
def evaluate(model, objective: Objective, upper, eval_pairs: PreferenceData,
             device, chunk: int = 8, upper_batch: Callable[[list[int]], dict] | None = None) -> dict:
    """Meta loss (unweighted meta loss over all upper units) and judge accuracy on the meta pairs:
    meta_acc = share of pairs with log p(chosen) > log p(rejected); meta_reward_acc = share with a
    positive DPO implicit-reward margin (policy margin above the reference margin). Online GRPO
    (`upper_batch` draws fresh groups with a fixed seed) adds `meta_reward`, the groups' mean reward."""
    was_training = model.training
    model.eval()
    losses, n, rewards = 0.0, 0, []
    for k in range(0, len(upper), chunk):
        units = list(range(k, min(k + chunk, len(upper))))
        batch = upper_batch(units) if upper_batch else to_device(upper.batch(units), device)
        per = objective.meta_per_sample(model, batch)
        losses, n = losses + float(per.sum()), n + per.numel()
        if "rewards" in batch:
            rewards += batch["rewards"].tolist()
    acc, racc, margin, dpo = 0.0, 0.0, 0.0, 0.0
    for k in range(0, len(eval_pairs), chunk):
        batch = to_device(eval_pairs.batch(range(k, min(k + chunk, len(eval_pairs)))), device)
        logps, _ = sequence_logps(model, batch["seq"])
        pc, pr = logps.chunk(2)
        rc, rr = batch["ref_logps"].chunk(2)
        acc += float((pc > pr).float().sum())
        racc += float((((pc - rc) - (pr - rr)) > 0).float().sum())
        margin += float((pc - pr).sum())
        dpo += float(dpo_losses(pc, pr, rc, rr, 1.0).sum())
    m = len(eval_pairs)
    if was_training:
        model.train()
    out = {"meta_loss": losses / max(n, 1), "meta_acc": acc / m, "meta_reward_acc": racc / m,
           "meta_margin": margin / m}
    if rewards:
        out["meta_reward"] = sum(rewards) / len(rewards)
    return out


def resumable_state(ckpt_dir: str | Path | None, fingerprint: str, optimizer_steps: int) -> dict | None:
    """The checkpoint train() resumes: same run (fingerprint) and not finished (fewer optimizer steps
    than asked). A finished run's checkpoint is not resumed: a forced or repeated run trains afresh and
    gives the metrics and curves of a fresh run; resuming is for interrupted or extended runs."""
    ckpt = Path(ckpt_dir) / "state.pt" if ckpt_dir else None
    if not ckpt or not ckpt.exists():
        return None
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    if saved.get("fingerprint") != fingerprint:
        log.info("ignoring checkpoint %s (different run)", ckpt)
        return None
    if saved["step"] >= optimizer_steps:
        log.info("checkpoint %s holds a finished run (%d optimizer steps): training afresh", ckpt, saved["step"])
        return None
    return saved


@dataclass
class RunResult:
    reweight: str = "none"
    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)


def _weights_snapshot(weight_model: WeightModel, recent: list[dict]) -> dict:
    """Domain weights, and the spread (percentiles) of instance weights: the whole table for
    instance_table, the weights given to the samples of the last logging window for instance_net."""
    snap = weight_model.snapshot()
    out: dict = {}
    if "domain_weights" in snap:
        out["domain_weights"] = snap["domain_weights"]
    w = snap.get("instance_weights")
    if w is None and weight_model.kind == "instance_net" and recent:
        w = torch.cat([r["weights"].float() for r in recent])
    if w is not None and w.numel():
        q = torch.quantile(w.float(), torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95]))
        out["instance_spread"] = {"p05": float(q[0]), "p25": float(q[1]), "p50": float(q[2]), "p75": float(q[3]),
                                  "p95": float(q[4]), "min": float(w.min()), "max": float(w.max()),
                                  "std": float(w.std()) if w.numel() > 1 else 0.0}
    return out


def train(model, objective: Objective, weight_model: WeightModel, lower, upper,
          eval_pairs: PreferenceData, cfg: TrainConfig, seed: int, ckpt_dir: str | Path | None = None,
          fingerprint_extra: dict | None = None, progress: bool = True, ref_store=None,
          sampler: Sampler | None = None) -> RunResult:
    """Train the judge (and the weight model; its kind is the run's `reweight`) for cfg.steps lower
    iterations (cfg.optimizer_steps optimizer steps); resume from `ckpt_dir/state.pt` when it holds an
    unfinished run with the same fingerprint. `ref_store` (a daj.train.refcache.ReferenceStore) shares
    reference log-probs with other runs. Online GRPO (lower and upper are daj.train.rollouts.PromptData):
    `sampler` draws cfg.grpo_group responses per prompt from the current model before every step."""
    from tqdm import tqdm

    from daj.io import atomic_open
    from daj.train.lora import load_trainable_state, trainable_state

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    for data in (lower, upper, eval_pairs):
        data.compute_reference(model, device=device, lazy=True, store=ref_store)
    reweight = weight_model.kind
    fp = run_identity(cfg, seed, reweight, fingerprint_extra or {})
    ckpt = Path(ckpt_dir) / "state.pt" if ckpt_dir else None
    n_steps = cfg.optimizer_steps
    state = resumable_state(ckpt_dir, fp, n_steps)
    if state:
        log.info("resuming from %s at optimizer step %d", ckpt, state["step"])
    judge_draws = state["judge_count"] if state else 0
    meta_draws = state["meta_count"] if state else 0
    online = isinstance(lower, PromptData)
    upper_batch = None
    if online:
        if sampler is None:
            raise ValueError("online GRPO needs a rollout sampler")
        kl = bool(getattr(objective, "grpo_kl", 0.0))
        temp = objective.temperature
        lower_stream = RolloutStream(lower, sampler, model, cfg.batch_size, cfg.grpo_group, seed, start=judge_draws,
                                     device=device, grad_accum=cfg.grad_accum, with_reference=kl, temperature=temp)
        upper_stream = RolloutStream(upper, sampler, model, cfg.meta_batch_size, cfg.grpo_group, seed + 1,
                                     start=meta_draws, device=device, with_reference=kl, temperature=temp)
        eval_seed = stable_seed(seed, "meta-eval")
        upper_batch = lambda units: upper_stream.make_batch(units, eval_seed)  # noqa: E731
    else:
        lower_stream = BatchStream(lower, cfg.batch_size, seed, start=judge_draws, device=device)
        upper_stream = BatchStream(upper, cfg.meta_batch_size, seed + 1, start=meta_draws, device=device)
    loss_fn = objective.per_sample
    engine, judge, reweighter = build_engine(model, weight_model, lower_stream, upper_stream, loss_fn, cfg,
                                             meta_loss_fn=objective.meta_per_sample)
    if online:  # an upper draw follows the lower optimizer steps taken so far
        upper_stream.version_fn = lambda: judge._count // cfg.grad_accum
    def due(every: int, step: int) -> bool:  # `every` counts iterations; checked at optimizer-step ends
        return bool(every) and (step + 1) * cfg.grad_accum // every > step * cfg.grad_accum // every

    result = RunResult(reweight=reweight)
    start_step = 0
    if state:
        load_trainable_state(model, state["adapter"])
        weight_model.load_state_dict(state["weight_model"])
        judge.optimizer.load_state_dict(state["judge_opt"])
        judge._count = state["judge_count"]
        if reweighter is not None:
            reweighter.optimizer.load_state_dict(state["meta_opt"])
            reweighter._count = state["meta_count"]
        engine.global_step = state["global_step"]
        start_step = state["step"]
        # the shorter run evaluated at its last step; a straight run evaluates only on the eval grid
        result.history = [r if not r["optimizer_step"] or due(cfg.eval_every, r["optimizer_step"] - 1)
                          else {k: v for k, v in r.items() if k not in EVAL_KEYS} for r in state["history"]]

    def save(step: int) -> None:
        if not ckpt:
            return
        blob = {"fingerprint": fp, "step": step, "adapter": trainable_state(model),
                "weight_model": weight_model.state_dict(), "judge_opt": judge.optimizer.state_dict(),
                "judge_count": judge._count, "global_step": engine.global_step, "history": result.history,
                "meta_opt": reweighter.optimizer.state_dict() if reweighter else None,
                "meta_count": reweighter._count if reweighter else 0}
        with atomic_open(ckpt, "wb") as fh:
            torch.save(blob, fh)

    engine.train()
    bar = tqdm(range(start_step, n_steps), desc=f"train {objective.name}/{reweight}", disable=not progress,
               initial=start_step, total=n_steps, unit="opt step")

    if not state:  # where every curve starts: the initial weights and the untrained judge's meta evaluation
        result.history.append({"step": 0, "optimizer_step": 0, **_weights_snapshot(weight_model, []),
                               **evaluate(model, objective, upper, eval_pairs, device, upper_batch=upper_batch)})

    for step in bar:
        t0 = time.perf_counter()
        n_judge = len(judge.records)
        n_meta = len(reweighter.records) if reweighter else 0
        for _ in range(cfg.grad_accum):
            engine.global_step += 1
            engine.train_step()
        seconds = time.perf_counter() - t0
        recs = judge.records[n_judge:]
        rec: dict = {"step": (step + 1) * cfg.grad_accum, "optimizer_step": step + 1, "seconds": seconds,
                     "loss": sum(float(r["loss"]) for r in recs) / len(recs),
                     "unweighted_loss": sum(r["unweighted"] for r in recs) / len(recs)}
        if online:
            rec["rollout_reward"] = sum(r["rollout_reward"] for r in recs) / len(recs)
            rec["rollout_responses"] = sum(r["rollout_responses"] for r in recs)
        if reweighter is not None:
            metas = reweighter.records[n_meta:]
            if metas:
                rec["meta_batch_loss"] = sum(float(r["loss"]) for r in metas) / len(metas)
            if reweighter.last_hypergrad is not None:
                rec["hypergrad_norm"] = math.sqrt(sum(float((g.float() ** 2).sum()) for g in reweighter.last_hypergrad))
        rec.update(_weights_snapshot(weight_model, recs))
        last = step + 1 == n_steps
        if last or due(cfg.eval_every, step):
            rec.update(evaluate(model, objective, upper, eval_pairs, device, upper_batch=upper_batch))
        result.history.append(rec)
        judge.records.clear()
        if reweighter is not None:
            reweighter.records.clear()
        bar.set_postfix(loss=f"{rec['loss']:.4f}")
        if last or due(cfg.ckpt_every, step):
            save(step + 1)
    trained = [r for r in result.history if r["optimizer_step"] > 0]
    if not trained:
        raise RuntimeError("no training step was run (steps <= checkpointed step)")
    final = dict(trained[-1])
    if online:
        final["rollouts"] = {"optimizer_steps_with_rollouts": sum(r["rollout_responses"] > 0 for r in trained),
                             "responses": sum(r["rollout_responses"] for r in trained),
                             "first_step_reward": trained[0]["rollout_reward"],
                             "last_step_reward": trained[-1]["rollout_reward"],
                             "mean_reward": sum(r["rollout_reward"] for r in trained) / len(trained)}
    timed = [r["seconds"] for r in trained[1:]] or [trained[0]["seconds"]]
    final["seconds_per_step"] = sum(timed) / len(timed)
    final["peak_rss_mb"] = peak_rss_mb()
    if device == "cuda":
        final["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if weight_model.kind == "instance_table":
        final["instance_weights"] = dict(zip(lower.instance_ids, weight_model.table().detach().cpu().tolist(),
                                             strict=True))
    result.final = final
    return result

"""Per-sample preference and RL losses: one loss per training instance, so a weight can multiply it.

The formulas (tensor in, tensor out) come first; `Objective` classes then run the model on a batch
built by daj.train.data and return the per-sample losses. Reference log-probs are precomputed in the
batch (daj.train.data, under PEFT's disable_adapter()), so a training step is deterministic and free
of side effects, as Betty's finite-difference hypergradient requires.

Conventions, checked against TRL 1.16 in tests/train/test_train_losses.py:
  DPO   sigmoid loss on summed response log-probs (TRL DPOTrainer, loss_type="sigmoid").
  KTO   TRL's KTOTrainer loss (loss_type="kto"): the KL reference term is the detached batch mean of
        log pi(y'|x) - log pi_ref(y'|x) over mismatched (prompt, response) pairs, clamped at 0.
  ORPO  odds ratio on token-averaged response log-probs (TRL's experimental ORPOTrainer), plus the
        NLL of the chosen response per example. TRL averages the NLL over all tokens of the batch,
        prompt included; the ORPO paper and we use the response tokens of each example.
  GRPO  per response: token mean of the clipped-ratio surrogate with group-relative advantages,
        plus an optional k3 KL estimate to the reference; log-probs at the sampling temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from daj.config import OBJECTIVES
from daj.train.logprobs import sequence_logps, token_logps

__all__ = ["OBJECTIVES", "make_objective"]


def dpo_losses(pol_chosen: torch.Tensor, pol_rejected: torch.Tensor, ref_chosen: torch.Tensor,
               ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) per pair."""
    margin = (pol_chosen - ref_chosen) - (pol_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, numerically stable on both sides of -ln 2."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_losses(mean_chosen: torch.Tensor, mean_rejected: torch.Tensor, nll_chosen: torch.Tensor,
                beta: float) -> torch.Tensor:
    """NLL(chosen) - beta * log sigmoid(log odds(chosen) - log odds(rejected)), per pair.

    mean_* are token-averaged response log-probs; nll_chosen the per-example token-mean NLL."""
    log_odds = (mean_chosen - mean_rejected) - (log1mexp(mean_chosen) - log1mexp(mean_rejected))
    return nll_chosen - beta * F.logsigmoid(log_odds)


def kto_kl(kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point: detached mean log-ratio on mismatched pairs, clamped at 0."""
    return (kl_logps - ref_kl_logps).mean().detach().clamp(min=0)


def kto_losses(logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor,
               beta: float, desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> torch.Tensor:
    """Per example: w_D (1 - sigmoid(beta (r - z))) if desirable, else w_U (1 - sigmoid(beta (z - r)))."""
    ratio = logps - ref_logps
    chosen = desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl)))
    rejected = undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio)))
    return torch.where(desirable, chosen, rejected)


def balanced_kto_weights(n_desirable: int, n_undesirable: int) -> tuple[float, float]:
    """(desirable, undesirable) weights with w_D * n_D = w_U * n_U, the larger class weighted 1."""
    n_d, n_u = max(n_desirable, 1), max(n_undesirable, 1)
    if n_d >= n_u:
        return n_u / n_d, 1.0
    return 1.0, n_d / n_u


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages (r - mean) / (std + eps) of one group's rewards (std unbiased, as TRL)."""
    if rewards.numel() < 2:
        return torch.zeros_like(rewards)
    return (rewards - rewards.mean()) / (rewards.std() + eps)


def grpo_losses(logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
                advantages: torch.Tensor, clip_eps: float = 0.2, kl_beta: float = 0.0) -> torch.Tensor:
    """Per response: token mean of -min(rho A, clip(rho, 1-e, 1+e) A) + kl_beta * k3(pi, ref).

    Inputs are [B, L] per-token tensors (zero off `mask`) and [B] advantages."""
    mask = mask.to(logps.dtype)
    ratio = torch.exp(logps - old_logps)
    adv = advantages.unsqueeze(1)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    per_token = -surrogate
    if kl_beta:
        delta = ref_logps - logps
        per_token = per_token + kl_beta * (torch.exp(delta) - delta - 1)
    return (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


class Objective:
    """Runs the model on a batch from daj.train.data and returns one loss per instance."""

    name = ""

    def __init__(self, beta: float = 0.1, grpo_clip: float = 0.2, grpo_kl: float = 0.0, temperature: float = 1.0):
        self.beta, self.grpo_clip, self.grpo_kl, self.temperature = beta, grpo_clip, grpo_kl, temperature

    def per_sample(self, model, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def meta_per_sample(self, model, batch: dict) -> torch.Tensor:
        """The upper (meta) level's per-sample loss: the same loss, unless an objective says otherwise."""
        return self.per_sample(model, batch)


class DPO(Objective):
    name = "dpo"

    def per_sample(self, model, batch: dict) -> torch.Tensor:
        logps, _ = sequence_logps(model, batch["seq"])
        chosen, rejected = logps.chunk(2)
        ref_c, ref_r = batch["ref_logps"].chunk(2)
        return dpo_losses(chosen, rejected, ref_c, ref_r, self.beta)


class ORPO(Objective):
    name = "orpo"

    def per_sample(self, model, batch: dict) -> torch.Tensor:
        logps, n = sequence_logps(model, batch["seq"])
        mean = logps / n.clamp(min=1)
        mean_c, mean_r = mean.chunk(2)
        return orpo_losses(mean_c, mean_r, -mean_c, self.beta)


class KTO(Objective):
    name = "kto"

    def per_sample(self, model, batch: dict) -> torch.Tensor:
        logps, _ = sequence_logps(model, batch["seq"])
        with torch.no_grad():  # the KL term is detached anyway; no graph needed
            kl_logps, _ = sequence_logps(model, batch["kl_seq"])
        kl = kto_kl(kl_logps, batch["ref_kl_logps"])
        losses = kto_losses(logps, batch["ref_logps"], batch["desirable"], kl, self.beta)
        return losses * batch["class_weight"]


class GRPO(Objective):
    """Log-probabilities are those of the sampling distribution: logits divided by `temperature` (the
    judge's sampling temperature), for the policy, the old policy and the reference alike, as TRL does.

    The old policy: online, the batch carries `old_token_logps`, recorded right after the group was
    sampled from the current judge. Offline (rollouts from a file), the behaviour policy's log-probs
    are not recorded (other models may have written the rollouts, and forced selections were never
    sampled), so the old policy is the current one, detached: a ratio of 1, and the loss is the
    group-baselined policy gradient (TRL's single-iteration case), never a ratio to the reference."""

    name = "grpo"

    def per_sample(self, model, batch: dict) -> torch.Tensor:
        logps, mask = token_logps(model, batch["seq"], temperature=self.temperature)
        old = batch["old_token_logps"] if "old_token_logps" in batch else logps.detach()
        ref = batch.get("ref_token_logps", old)  # only read when grpo_kl > 0
        return grpo_losses(logps, old, ref, mask, batch["advantages"], self.grpo_clip, self.grpo_kl)

    def meta_per_sample(self, model, batch: dict) -> torch.Tensor:
        """Online meta loss: minus the group's mean reward (a constant) plus the GRPO loss. Its value
        is the negative mean verifiable reward of the fresh groups (the surrogate is 0 at ratio 1
        because advantages sum to 0 per group); its gradient is GRPO's group-baselined policy
        gradient of that reward. Offline (no rewards in the batch): the GRPO loss itself."""
        losses = self.per_sample(model, batch)
        return losses - batch["group_reward"] if "group_reward" in batch else losses


def make_objective(name: str, beta: float = 0.1, grpo_clip: float = 0.2, grpo_kl: float = 0.0,
                   temperature: float = 1.0) -> Objective:
    """`temperature`: the rollouts' sampling temperature (GRPO only; the preference losses score the
    model's own distribution)."""
    cls = {"dpo": DPO, "kto": KTO, "orpo": ORPO, "grpo": GRPO}[name]
    return cls(beta=beta, grpo_clip=grpo_clip, grpo_kl=grpo_kl, temperature=temperature if name == "grpo" else 1.0)

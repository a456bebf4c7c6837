"""Weight models: map a batch (instance indices, domain indices, detached per-sample losses) to weights.

  none            every weight is 1 (no parameters).
  domain          one logit per domain; weights = D * softmax(logits), so the mean over domains is 1;
                  uniform (all 1) at start.
  instance_table  one parameter per training instance; weight = softplus(p), p starts at
                  softplus^-1(1) so every weight starts at 1; non-negative with a gradient everywhere.
  instance_net    MLP 1 -> 10 -> 10 -> 1 (ReLU) on the scaled loss x = asinh(loss), weight =
                  softplus(out + softplus^-1(1)); the last layer starts at zero so every weight starts
                  at 1. asinh is ~linear near 0 and logarithmic for large |loss|, and it accepts the
                  negative losses of GRPO, so DPO (>= 0), KTO (0..1) and GRPO losses all land in a
                  range the small net handles without per-objective tuning.
"""

from __future__ import annotations

import math

import torch
from torch import nn

REWEIGHTS = ("none", "domain", "instance_table", "instance_net")
SOFTPLUS_INV_1 = math.log(math.e - 1)  # softplus^-1(1)


class WeightModel(nn.Module):
    """forward(index [N], domain [N], losses [N]) -> weights [N]."""

    kind = ""

    def forward(self, index: torch.Tensor, domain: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def snapshot(self) -> dict:
        """What to log about the current weights (plain floats)."""
        return {}


class NoWeights(WeightModel):
    kind = "none"

    def forward(self, index, domain, losses):
        return torch.ones_like(losses)


class DomainWeights(WeightModel):
    kind = "domain"

    def __init__(self, domains: list[str]):
        super().__init__()
        self.domains = list(domains)
        self.logits = nn.Parameter(torch.zeros(len(self.domains)))

    def table(self) -> torch.Tensor:
        return len(self.domains) * torch.softmax(self.logits, dim=0)

    def forward(self, index, domain, losses):
        if (domain < 0).any():
            raise ValueError("an instance has a domain outside the training domains")
        return self.table()[domain].to(losses.dtype)

    def snapshot(self) -> dict:
        w = self.table().detach().cpu().tolist()
        return {"domain_weights": dict(zip(self.domains, w, strict=True))}


class InstanceTable(WeightModel):
    kind = "instance_table"

    def __init__(self, n_instances: int):
        super().__init__()
        self.raw = nn.Parameter(torch.full((n_instances,), SOFTPLUS_INV_1))

    def table(self) -> torch.Tensor:
        return nn.functional.softplus(self.raw)

    def forward(self, index, domain, losses):
        return self.table()[index].to(losses.dtype)

    def snapshot(self) -> dict:
        return {"instance_weights": self.table().detach().cpu()}


class InstanceNet(WeightModel):
    kind = "instance_net"

    def __init__(self, hidden: int = 10, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))
        with torch.no_grad():
            for layer in (self.net[0], self.net[2]):
                bound = 1 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=gen)
                layer.bias.uniform_(-bound, bound, generator=gen)
            self.net[4].weight.zero_()
            self.net[4].bias.zero_()

    @staticmethod
    def scale(losses: torch.Tensor) -> torch.Tensor:
        return torch.asinh(losses)

    def forward(self, index, domain, losses):
        x = self.scale(losses.detach().float()).unsqueeze(-1)
        return nn.functional.softplus(self.net(x).squeeze(-1) + SOFTPLUS_INV_1).to(losses.dtype)


def make_weight_model(kind: str, domains: list[str], n_instances: int, seed: int = 0) -> WeightModel:
    if kind == "none":
        return NoWeights()
    if kind == "domain":
        return DomainWeights(domains)
    if kind == "instance_table":
        return InstanceTable(n_instances)
    if kind == "instance_net":
        return InstanceNet(seed=seed)
    raise ValueError(f"unknown reweight {kind!r}")

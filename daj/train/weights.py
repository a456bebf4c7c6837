"""Weight models: map a batch (instance indices, domain indices, detached per-sample losses) to weights.

Two parametrisations (`train.weight_param`):

paper (default): Algorithm 1 of the paper; the upper Adam updates the weights themselves.
  domain          alpha_k, one parameter per domain, initialised to 1/K; weight = alpha_k.
  instance_table  alpha_i, one parameter per training instance, initialised to 1; weight = alpha_i.
  instance_net    MLP 1 -> 10 -> 10 -> 1 (ReLU) on the detached per-sample loss l (no rescaling), every
                  layer with PyTorch's default uniform init drawn from a generator seeded by the run's
                  seed (last layer included); weight = softplus(MLP(l)) = log(1 + exp(MLP(l))).
  Non-negativity of the direct parameters (domain, instance_table) is a projection: after every upper
  optimizer step each alpha is set to max(alpha, 0) (`project()`, called by the upper problem's Betty
  `param_callback`, which runs right after `optimizer.step()`). A projected weight of 0 still gets a
  hypergradient (its loss term is in the lower step), so it can come back. The net's softplus output
  is non-negative by construction. Weights are never renormalised (the paper does not): the lower
  loss is mean_i w_i l_i with the weights as they are.

softmax (the earlier reparametrisations; an option only):
  domain          weights = K * softmax(logits), logits 0 at start (all weights 1, mean over domains 1).
  instance_table  weight = softplus(p), p starts at softplus^-1(1).
  instance_net    the MLP above on asinh(loss), weight = softplus(out + softplus^-1(1)), last layer
                  zero-initialised so every weight starts at 1.
  At Adam's step size lr a logit moves about lr per step, so a weight of 1 moves about lr (a softplus
  parameter moves the weight by sigmoid(p) = 0.63 lr): the paper's alpha_k = 1/K moves lr on 1/K,
  i.e. K times more relative to its size (docs/train.md has the measured difference).
"""

from __future__ import annotations

import math
from typing import get_args

import torch
from torch import nn

from daj.config import REWEIGHTS, TrainConfig

WEIGHT_PARAMS: tuple[str, ...] = get_args(TrainConfig.model_fields["weight_param"].annotation)
__all__ = ["REWEIGHTS", "WEIGHT_PARAMS", "make_weight_model"]
SOFTPLUS_INV_1 = math.log(math.e - 1)  # softplus^-1(1)
HIDDEN = 10  # the paper's instance net: two hidden layers of 10 units


class WeightModel(nn.Module):
    """forward(index [N], domain [N], losses [N]) -> weights [N]."""

    kind = ""
    param = "paper"

    def forward(self, index: torch.Tensor, domain: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def project(self) -> None:
        """Keep the weights feasible after an upper optimizer step (a no-op unless parameters are weights)."""

    def snapshot(self) -> dict:
        """What to log about the current weights (plain floats)."""
        return {}


class NoWeights(WeightModel):
    kind = "none"

    def forward(self, index, domain, losses):
        return torch.ones_like(losses)


def _check_domains(domain: torch.Tensor) -> None:
    if (domain < 0).any():
        raise ValueError("an instance has a domain outside the training domains")


class DomainWeights(WeightModel):
    """Paper: alpha_k = 1/K at start, updated directly, projected onto alpha_k >= 0."""

    kind = "domain"

    def __init__(self, domains: list[str]):
        super().__init__()
        self.domains = list(domains)
        self.alpha = nn.Parameter(torch.full((len(self.domains),), 1.0 / len(self.domains)))

    def table(self) -> torch.Tensor:
        return self.alpha

    @torch.no_grad()
    def project(self) -> None:
        self.alpha.clamp_(min=0.0)

    def forward(self, index, domain, losses):
        _check_domains(domain)
        return self.table()[domain].to(losses.dtype)

    def snapshot(self) -> dict:
        w = self.table().detach().cpu().tolist()
        return {"domain_weights": dict(zip(self.domains, w, strict=True))}


class SoftmaxDomainWeights(DomainWeights):
    """softmax option: weights = K * softmax(logits), logits 0 at start."""

    param = "softmax"

    def __init__(self, domains: list[str]):
        nn.Module.__init__(self)
        self.domains = list(domains)
        self.logits = nn.Parameter(torch.zeros(len(self.domains)))

    def table(self) -> torch.Tensor:
        return len(self.domains) * torch.softmax(self.logits, dim=0)

    @torch.no_grad()
    def project(self) -> None:
        pass


class InstanceTable(WeightModel):
    """Paper: alpha_i = 1 at start, updated directly, projected onto alpha_i >= 0."""

    kind = "instance_table"

    def __init__(self, n_instances: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(n_instances))

    def table(self) -> torch.Tensor:
        return self.alpha

    @torch.no_grad()
    def project(self) -> None:
        self.alpha.clamp_(min=0.0)

    def forward(self, index, domain, losses):
        return self.table()[index].to(losses.dtype)

    def snapshot(self) -> dict:
        return {"instance_weights": self.table().detach().cpu().clone()}


class SoftplusInstanceTable(InstanceTable):
    """softmax option: weight = softplus(p), p starts at softplus^-1(1)."""

    param = "softmax"

    def __init__(self, n_instances: int):
        nn.Module.__init__(self)
        self.raw = nn.Parameter(torch.full((n_instances,), SOFTPLUS_INV_1))

    def table(self) -> torch.Tensor:
        return nn.functional.softplus(self.raw)

    @torch.no_grad()
    def project(self) -> None:
        pass


def _mlp(seed: int, zero_last: bool) -> nn.Sequential:
    """1 -> 10 -> 10 -> 1 with ReLU; PyTorch's default Linear init, drawn from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))
    with torch.no_grad():
        for layer in (net[0], net[2], net[4]):
            bound = 1 / math.sqrt(layer.in_features)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
        if zero_last:
            net[4].weight.zero_()
            net[4].bias.zero_()
    return net


class InstanceNet(WeightModel):
    """Paper: weight = softplus(MLP(loss)), the loss detached and unscaled, every layer random (seeded)."""

    kind = "instance_net"

    def __init__(self, seed: int = 0):
        super().__init__()
        self.net = _mlp(seed, zero_last=False)

    def inputs(self, losses: torch.Tensor) -> torch.Tensor:
        return losses.detach().float()

    def outputs(self, out: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(out)

    def forward(self, index, domain, losses):
        out = self.net(self.inputs(losses).unsqueeze(-1)).squeeze(-1)
        return self.outputs(out).to(losses.dtype)


class AsinhInstanceNet(InstanceNet):
    """softmax option: softplus(MLP(asinh(loss)) + softplus^-1(1)), last layer zero (weights start at 1)."""

    param = "softmax"

    def __init__(self, seed: int = 0):
        nn.Module.__init__(self)
        self.net = _mlp(seed, zero_last=True)

    def inputs(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.asinh(losses.detach().float())

    def outputs(self, out: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(out + SOFTPLUS_INV_1)


_MODELS = {("domain", "paper"): DomainWeights, ("domain", "softmax"): SoftmaxDomainWeights,
           ("instance_table", "paper"): InstanceTable, ("instance_table", "softmax"): SoftplusInstanceTable,
           ("instance_net", "paper"): InstanceNet, ("instance_net", "softmax"): AsinhInstanceNet}


def make_weight_model(kind: str, domains: list[str], n_instances: int, seed: int = 0,
                      param: str = "paper") -> WeightModel:
    """The weight model of `reweight` = kind under parametrisation `param` (train.weight_param)."""
    if kind == "none":
        return NoWeights()
    cls = _MODELS.get((kind, param))
    if cls is None:
        raise ValueError(f"unknown reweight {kind!r} or weight_param {param!r}")
    if kind == "domain":
        return cls(domains)
    if kind == "instance_table":
        return cls(n_instances)
    return cls(seed=seed)

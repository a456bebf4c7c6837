"""Weight parametrisations (daj.train.weights): the paper's direct weights move as Adam moves a parameter
at the paper's meta learning rate, stay non-negative by projection, are never renormalised; the
softmax option moves them much less."""

from __future__ import annotations

import pytest
import torch

from daj.config import TrainConfig
from daj.train.bilevel import build_engine
from daj.train.weights import WEIGHT_PARAMS, make_weight_model

torch.set_num_threads(1)
META_LR = 1e-4  # the paper's meta learning rate
N_UPPER = 20    # upper Adam steps
# Adam's step is lr * m_hat / sqrt(v_hat): about lr under a steady gradient, somewhat more while the
# gradient grows (at most (1 - beta1) / sqrt(1 - beta2) = 3.2 lr in the worst case); measured here <= 1.11 lr
SLACK = 1.1


def _problem(seed: int = 0):
    """Linear regression in 3 domains; domain 2's targets are negated (corrupted); the meta data is clean."""
    g = torch.Generator().manual_seed(seed)
    d, n = 5, 24
    w_true = torch.randn(d, generator=g)
    x = torch.randn(n, d, generator=g)
    domain = torch.arange(n) % 3
    y = x @ w_true * torch.where(domain == 2, -1.0, 1.0) + 0.05 * torch.randn(n, generator=g)
    xv = torch.randn(16, d, generator=g)
    return x, y, domain, xv, xv @ w_true, 0.1 * torch.randn(d, generator=g)


class _Loader:
    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


def _loss_fn(module, batch):
    return (module(batch["x"]).squeeze(-1) - batch["y"]) ** 2


def _train(weight_model, steps: int = N_UPPER, meta_lr: float = META_LR, seed: int = 0) -> list[torch.Tensor]:
    """`steps` bi-level steps (one lower Adam step, one upper Adam step each); the weights per instance
    before the first step and after every step."""
    x, y, domain, xv, yv, theta0 = _problem(seed)
    module = torch.nn.Linear(x.shape[1], 1, bias=False)
    with torch.no_grad():
        module.weight.copy_(theta0.unsqueeze(0))
    lower = {"x": x, "y": y, "index": torch.arange(len(x)), "domain": domain}
    upper = {"x": xv, "y": yv, "index": torch.zeros(len(xv), dtype=torch.long),
             "domain": torch.zeros(len(xv), dtype=torch.long)}
    cfg = TrainConfig(lr=0.01, meta_lr=meta_lr, grad_accum=1, meta_every=1)
    engine, _, reweighter = build_engine(module, weight_model, _Loader(lower), _Loader(upper), _loss_fn, cfg)
    weights = lambda: weight_model(lower["index"], domain, torch.zeros(len(x))).detach().clone()  # noqa: E731
    trace = [weights()]
    for _ in range(steps):
        engine.global_step += 1
        engine.train_step()
        trace.append(weights())
    assert reweighter._count == steps  # one upper step per lower step
    return trace


def _per_domain(w: torch.Tensor) -> torch.Tensor:
    return w[:3]  # instances 0, 1, 2 are in domains 0, 1, 2


def test_paper_domain_weights_move_by_the_meta_learning_rate():
    model = make_weight_model("domain", ["a", "b", "c"], 24)  # the default parametrisation
    trace = [_per_domain(w) for w in _train(model)]
    assert torch.allclose(trace[0], torch.full((3,), 1 / 3))  # alpha_k = 1/K (Algorithm 1)
    moved = trace[-1] - trace[0]
    bound = N_UPPER * META_LR
    assert (moved.abs() <= bound * SLACK).all(), moved  # Adam moves a parameter by about lr per step
    assert moved[2] < -0.8 * bound, moved  # the corrupted domain goes down, at nearly the full rate
    assert moved.abs().max() > 10 * META_LR  # it really moves: far more than one step's worth
    for before, after in zip(trace, trace[1:], strict=False):  # at most ~lr per upper step
        assert ((after - before).abs() <= META_LR * SLACK).all()
    # no renormalisation: the weight used in the lower loss is the parameter itself
    assert torch.equal(model(torch.arange(3), torch.arange(3), torch.zeros(3)), model.alpha.detach())
    assert abs(float(model.alpha.detach().sum()) - 1.0) > 1e-5  # the sum drifted from 1 and was left there


def test_paper_instance_table_moves_by_the_meta_learning_rate():
    model = make_weight_model("instance_table", ["a", "b", "c"], 24)
    trace = _train(model)
    assert torch.equal(trace[0], torch.ones(24))  # alpha_i = 1 (Algorithm 1)
    moved = trace[-1] - trace[0]
    bound = N_UPPER * META_LR
    assert (moved.abs() <= bound * SLACK).all(), moved
    assert (moved.abs() > 0.5 * bound).float().mean() > 0.5, moved  # most instances moved most of the way
    assert moved[2::3].mean() < -0.5 * bound  # the corrupted domain's instances went down


def test_the_softmax_option_moves_weights_much_less():
    """Same problem, same meta learning rate: the earlier reparametrisations move the weights less,
    relative to their size (domain: K times less; instance table: sigmoid(p0) = 0.63 times)."""
    moved = {}
    for param in WEIGHT_PARAMS:
        dom = [_per_domain(w) for w in _train(make_weight_model("domain", ["a", "b", "c"], 24, param=param))]
        table = _train(make_weight_model("instance_table", ["a", "b", "c"], 24, param=param))
        # relative movement of the corrupted domain against the clean ones: log(w_gamma / mean clean)
        rel = lambda w: torch.log(w[2] / w[:2].mean())  # noqa: E731
        moved[param] = {"domain": float(rel(dom[-1]) - rel(dom[0])),
                        "table": float((table[-1] - table[0]).abs().max())}
    paper, soft = moved["paper"], moved["softmax"]
    assert paper["domain"] < 0 and soft["domain"] < 0  # both lower the corrupted domain
    assert abs(paper["domain"]) > 2 * abs(soft["domain"]), moved  # K = 3 times in theory
    assert soft["table"] < 0.7 * paper["table"], moved  # 0.63 in theory
    assert soft["table"] > 0.3 * paper["table"], moved


def test_projection_keeps_direct_weights_non_negative():
    """A weight that one upper step would push below 0 is projected onto 0 (after every upper step)."""
    model = make_weight_model("domain", ["a", "b", "c"], 24)
    with torch.no_grad():
        model.alpha.copy_(torch.tensor([1 / 3, 1 / 3, 0.3 * META_LR]))  # within one step of 0
    trace = [_per_domain(w) for w in _train(model, steps=5)]
    assert trace[1][2] == 0.0  # the step would have gone to about -0.7 lr: projected onto 0
    assert all((w >= 0).all() for w in trace)
    table = make_weight_model("instance_table", ["a", "b", "c"], 24)
    with torch.no_grad():
        table.alpha.fill_(0.5 * META_LR)
    trace = _train(table, steps=3)
    assert all((w >= 0).all() for w in trace) and (trace[-1] == 0).any()


def test_instance_net_is_the_papers_mlp():
    """Two hidden layers of 10 on the raw (detached) loss, every layer random and seeded, non-negative out."""
    net = make_weight_model("instance_net", [], 0, seed=3)
    shapes = [tuple(p.shape) for p in net.parameters()]
    assert shapes == [(10, 1), (10,), (10, 10), (10,), (1, 10), (1,)]
    assert net.net[4].weight.abs().sum() > 0  # the last layer is random too
    same, other = make_weight_model("instance_net", [], 0, seed=3), make_weight_model("instance_net", [], 0, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), same.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(net.parameters(), other.parameters(), strict=True))
    losses = torch.tensor([-50.0, -1.0, 0.0, 0.3, 0.69, 2.0, 40.0], requires_grad=True)
    w = net(torch.zeros(7, dtype=torch.long), torch.zeros(7, dtype=torch.long), losses)
    out = net.net(losses.detach().unsqueeze(-1)).squeeze(-1)  # the input is the loss itself (no asinh)
    assert torch.allclose(w, torch.nn.functional.softplus(out))
    assert (w >= 0).all() and w.std() > 0  # non-negative, and a function of the loss from the start
    assert w.grad_fn is not None and not any(p is losses for p in net.parameters())
    w.sum().backward()
    assert losses.grad is None  # the loss is detached: the net does not push the judge


@pytest.mark.parametrize("kind", ["domain", "instance_table", "instance_net"])
def test_softmax_option_starts_every_weight_at_one(kind):
    model = make_weight_model(kind, ["a", "b", "c"], 4, param="softmax")
    index, domain = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 0])
    losses = torch.tensor([0.1, 2.0, -0.5, 30.0])
    assert torch.allclose(model(index, domain, losses), torch.ones(4))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(3.0 * torch.randn(p.shape, generator=gen))
    w = model(index, domain, losses)
    assert (w >= 0).all() and torch.isfinite(w).all()  # softplus: non-negative (it underflows to 0 far left)

"""Betty's darts hypergradient for the domain weights, through our bi-level problems, against the exact
one-step unrolled gradient computed with torch.func on a small differentiable problem."""

from __future__ import annotations

import pytest
import torch

from daj.config import TrainConfig
from daj.train.bilevel import build_engine
from daj.train.weights import make_weight_model

torch.set_num_threads(1)
LR = 0.05


def _problem(seed: int = 0):
    """Linear regression; domains 0 and 1 are clean, domain 2 has its targets negated; meta data clean."""
    g = torch.Generator().manual_seed(seed)
    d, n = 5, 24
    w_true = torch.randn(d, generator=g)
    x = torch.randn(n, d, generator=g)
    domain = torch.arange(n) % 3
    y = x @ w_true * torch.where(domain == 2, -1.0, 1.0) + 0.05 * torch.randn(n, generator=g)
    xv = torch.randn(16, d, generator=g)
    yv = xv @ w_true
    theta0 = 0.1 * torch.randn(d, generator=g)
    return x, y, domain, xv, yv, theta0


def _loss_fn(module, batch):
    return (module(batch["x"]).squeeze(-1) - batch["y"]) ** 2


def _stream(batch):
    while True:
        yield batch


def _betty_hypergrad(weight_model, x, y, domain, xv, yv, theta0):
    module = torch.nn.Linear(x.shape[1], 1, bias=False)
    with torch.no_grad():
        module.weight.copy_(theta0.unsqueeze(0))
    lower = {"x": x, "y": y, "index": torch.arange(len(x)), "domain": domain}
    upper = {"x": xv, "y": yv, "index": torch.zeros(len(xv), dtype=torch.long),
             "domain": torch.zeros(len(xv), dtype=torch.long)}
    cfg = TrainConfig(lr=LR, meta_lr=1e-3, grad_accum=1, meta_every=1)
    engine, judge, reweighter = build_engine(module, weight_model, _Loader(lower), _Loader(upper), _loss_fn, cfg,
                                             lower_opt=torch.optim.SGD)
    expected = _sgd_step(weight_model, x, y, domain, theta0)  # before the upper step moves the weights
    engine.global_step += 1
    engine.train_step()
    assert torch.allclose(module.weight.detach().squeeze(0), expected, atol=1e-6)
    return reweighter.last_hypergrad[0]


class _Loader:
    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        return _stream(self.batch)


def _sgd_step(weight_model, x, y, domain, theta0):
    with torch.no_grad():
        w = weight_model(torch.arange(len(x)), domain, torch.zeros(len(x)))
    theta = theta0.clone().requires_grad_(True)
    loss = (w * (x @ theta - y) ** 2).mean()
    (grad,) = torch.autograd.grad(loss, theta)
    return (theta - LR * grad).detach()


def _exact(weights_of_params, params0, x, y, xv, yv, theta0):
    """d/dparams of L_meta(theta0 - lr * grad_theta L_train(theta0, w(params)))."""

    def unrolled(params):
        w = weights_of_params(params)
        g = torch.func.grad(lambda th: (w * (x @ th - y) ** 2).mean())(theta0)
        return ((xv @ (theta0 - LR * g) - yv) ** 2).mean()

    return torch.func.grad(unrolled)(params0)


def _cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@pytest.mark.parametrize("param", ["paper", "softmax"])
def test_domain_hypergradient_matches_unrolled(param):
    """Non-uniform domain weights: the lower step must use them (checked against a weighted SGD step)."""
    x, y, domain, xv, yv, theta0 = _problem()
    model = make_weight_model("domain", ["a", "b", "c"], len(x), param=param)
    if param == "paper":  # the weights are the parameters
        params0 = torch.tensor([0.6, 0.15, 0.4])
        weights_of = lambda alpha: alpha[domain]  # noqa: E731
    else:
        params0 = torch.tensor([0.6, -0.4, 0.2])
        weights_of = lambda logits: 3 * torch.softmax(logits, 0)[domain]  # noqa: E731
    (param_tensor,) = model.parameters()
    with torch.no_grad():
        param_tensor.copy_(params0)
    assert model.table().std() > 0.15 * model.table().mean()
    betty_grad = _betty_hypergrad(model, x, y, domain, xv, yv, theta0)
    exact = _exact(weights_of, params0, x, y, xv, yv, theta0)
    big = exact.abs() > 0.1 * exact.abs().max()  # darts is a first-order estimate: tiny components may differ
    assert torch.equal(torch.sign(betty_grad[big]), torch.sign(exact[big])), (betty_grad, exact)
    assert _cos(betty_grad, exact) >= 0.9, (betty_grad, exact)
    assert exact[2] > 0  # raising the corrupted domain's weight hurts the meta loss
    assert param_tensor.detach()[2] < params0[2]  # and the upper Adam step lowered it


@pytest.mark.parametrize("param", ["paper", "softmax"])
def test_instance_table_hypergradient_matches_unrolled(param):
    x, y, domain, xv, yv, theta0 = _problem(seed=3)
    model = make_weight_model("instance_table", ["a", "b", "c"], len(x), param=param)
    target = torch.linspace(0.3, 2.3, len(x))  # non-uniform weights so the lower step must apply them
    params0 = target if param == "paper" else torch.log(torch.expm1(target))
    (param_tensor,) = model.parameters()
    with torch.no_grad():
        param_tensor.copy_(params0)
    betty_grad = _betty_hypergrad(model, x, y, domain, xv, yv, theta0)
    weights_of = (lambda a: a) if param == "paper" else torch.nn.functional.softplus
    exact = _exact(weights_of, params0, x, y, xv, yv, theta0)
    assert _cos(betty_grad, exact) >= 0.9
    big = exact.abs() > 0.1 * exact.abs().max()
    assert torch.equal(torch.sign(betty_grad[big]), torch.sign(exact[big]))


def test_bilevel_step_forward_passes():
    """A bi-level step = lower fwd+bwd, meta fwd+bwd, and two darts re-runs that build no graph."""
    import collections

    from transformers import AutoModelForCausalLM, Qwen3Config

    from daj.models.tiny import train_tokenizer
    from daj.train.bilevel import train
    from daj.train.data import PreferenceData
    from daj.train.lora import add_lora
    from daj.train.losses import make_objective
    from daj.train.synthetic import corpus, make_rows
    from daj.train.weights import make_weight_model

    tok = train_tokenizer(corpus(), vocab_size=400)
    lower_rows, _ = make_rows("lower", ["a", "b"], 3, set(), 0)
    upper_rows, _ = make_rows("upper", ["a", "b"], 1, set(), 0)
    counts = {}
    for mode in ("none", "domain"):
        torch.manual_seed(0)
        config = Qwen3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, head_dim=16)
        model = add_lora(AutoModelForCausalLM.from_config(config), 4, 8, ["q_proj", "v_proj"])
        data = [PreferenceData("dpo", tok, 256, rows, ["a", "b"]) for rows in (lower_rows, upper_rows, upper_rows)]
        for d in data:  # reference passes up front, so only training and evaluation passes are counted
            d.compute_reference(model)
        calls = collections.Counter()
        model.base_model.model.model.register_forward_hook(
            lambda m, i, o, calls=calls: calls.update(["grad" if torch.is_grad_enabled() else "nograd"]))
        cfg = TrainConfig(objective="dpo", steps=3, grad_accum=1)
        train(model, make_objective("dpo"), make_weight_model(mode, ["a", "b"], 6), *data, cfg, 0, progress=False)
        counts[mode] = dict(calls)
    # the evaluation passes (meta loss, meta accuracy; before training and at the end) are gradient-free
    assert counts["none"] == {"grad": 3, "nograd": 2 * 2}
    assert counts["domain"] == {"grad": 3 + 3, "nograd": 2 * 2 + 2 * 3}

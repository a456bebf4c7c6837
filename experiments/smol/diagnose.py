"""Why did the trained smol judges collapse to position 1? Three measurements (docs/smol.md).

1. Learning rate: the logit margin m = log p("1") - log p("2") of the selection digit (after
   `<selection>`), averaged over probe prompts in both orders, before and after ONE Adam step on one
   DPO record, at several learning rates (Adam's first step computed from the gradient:
   p - lr * g / (|g| + 1e-8), which is what torch.optim.Adam does at step 1). Adam's first step moves every LoRA parameter by about
   lr * sign(gradient) whatever the gradient's size, so a large lr turns one record into a large,
   prompt-independent shift of m.
2. The sign of the gradient on the tag token: the gradients of the DPO loss for the two orders of
   the same pair (chosen `1` in one, `2` in the other). Their cosine near -1 means they cancel: what
   one order teaches is mostly "prefer this position", and only their sum carries content.
3. Both orders in one optimizer step: with the train stage's batch order (a seeded permutation of
   the records, daj.train.data.BatchStream), the share of optimizer steps that hold both orders of a
   pair, and the steps' net position preference (records preferring 1 minus those preferring 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


class _Sized:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def batch_composition(records: list[dict], grad_accum: int, steps: int, seed: int) -> dict:
    """Measurement 3 on the records (in file order = unit order) for one run's settings."""
    from daj.train.data import BatchStream

    stream = BatchStream(_Sized(len(records)), 1, seed)
    pair_of = [r["group"].split("/", 2)[-1] for r in records]
    key = ["|".join(sorted(p.rsplit("/", 1)[-1].split("|"))) + r["problem_id"] for p, r in zip(pair_of, records,
                                                                                             strict=True)]
    both = 0
    net = []
    for step in range(steps):
        units = [stream.units_for_draw(step * grad_accum + j)[0] for j in range(grad_accum)]
        keys = [key[u] for u in units]
        both += len(keys) != len(set(keys))
        net.append(sum(1 if records[u]["correct_position"] == 1 else -1 for u in units))
    return {"records": len(records), "prefer_1": sum(r["correct_position"] == 1 for r in records),
            "grad_accum": grad_accum, "steps": steps, "steps_with_both_orders": both,
            "net_position_preference_per_step": net, "cumulative_net_preference": sum(net)}


def _digit_margin(model, tokenizer, prompt: str) -> float:
    ids = tokenizer(prompt + "<selection>", add_special_tokens=False)["input_ids"]
    one = tokenizer("1</selection>", add_special_tokens=False)["input_ids"][0]
    two = tokenizer("2</selection>", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), logits_to_keep=1).logits[0, -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    return float(logp[one] - logp[two])


def _dpo_direction_loss(model, tokenizer, record: dict) -> torch.Tensor:
    """-(log p(chosen) - log p(rejected)): at the start (policy = reference) the DPO loss's gradient
    is beta/2 times this one's, so its sign pattern (all Adam's first step uses) is the same."""
    total = []
    prompt_ids = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
    for resp in (record["chosen"], record["rejected"]):
        r = tokenizer(resp, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + r])
        logits = model(input_ids=ids, logits_to_keep=len(r) + 1).logits[0, :-1].float()
        total.append(torch.log_softmax(logits, dim=-1)[torch.arange(len(r)), torch.tensor(r)].sum())
    return -(total[0] - total[1])


def _grad_vector(model, loss: torch.Tensor) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    return torch.cat([g.reshape(-1) for g in grads])


def diagnose(model_ref: str, pairs_dir: str | Path, cfg: dict, device: str = "cpu", probes: int = 2,
             lrs: tuple[float, ...] = (1e-3, 1e-5)) -> dict:
    """The three measurements of the module docstring on the experiment's pairs."""
    from daj.models.loading import load_causal_lm
    from daj.train.lora import add_lora

    lower = [json.loads(x) for x in Path(pairs_dir, "lower.jsonl").read_text().splitlines() if x.strip()]
    upper = [json.loads(x) for x in Path(pairs_dir, "upper.jsonl").read_text().splitlines() if x.strip()]
    out: dict = {"batches": {
        "this_run": batch_composition(lower, cfg["grad_accum"], cfg["steps"], int(cfg["seeds"][0])),
        "smol_preset_like (grad_accum 2, 6 steps)": batch_composition(lower, 2, 6, 0)}}
    model, tok = load_causal_lm(model_ref, device=device)
    model.config.use_cache = False
    model = add_lora(model, 32, 64, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model.eval()  # no dropout; gradients still flow to the LoRA weights
    probe = upper[: 2 * probes]  # both orders of the first probe pairs (records come in order pairs)
    base = [_digit_margin(model, tok, r["prompt"]) for r in probe]
    out["probe"] = {"records": len(probe), "correct_positions": [r["correct_position"] for r in probe],
                    "base_margin": base, "base_mean_margin": sum(base) / len(base)}
    first, second = lower[0], lower[1]  # the two orders of the first lower pair
    g1 = _grad_vector(model, _dpo_direction_loss(model, tok, first))
    g2 = _grad_vector(model, _dpo_direction_loss(model, tok, second))
    cos = float(torch.nn.functional.cosine_similarity(g1, g2, dim=0))
    out["gradient"] = {"record_orders": [first["correct_position"], second["correct_position"]],
                       "norm_first": float(g1.norm()), "norm_second": float(g2.norm()),
                       "cosine_between_orders": cos,
                       "norm_of_sum_over_sum_of_norms": float((g1 + g2).norm() / (g1.norm() + g2.norm()))}
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    steps = {}
    for lr in lrs:
        for rec, g in ((first, g1), (second, g2)):
            # Adam's first step (bias-corrected m = g, v = g^2): p -= lr * g / (|g| + eps), eps = 1e-8
            with torch.no_grad():
                offset = 0
                for p, p0 in zip(params, start, strict=True):
                    gp = g[offset:offset + p.numel()].view_as(p)
                    p.copy_(p0 - lr * gp / (gp.abs() + 1e-8))
                    offset += p.numel()
            after = [_digit_margin(model, tok, r["prompt"]) for r in probe]
            shift = [a - b for a, b in zip(after, base, strict=True)]
            steps[f"lr={lr:g}, record prefers {rec['correct_position']}"] = {
                "mean_margin_shift": sum(shift) / len(shift), "margin_shift_per_probe": shift}
    with torch.no_grad():
        for p, p0 in zip(params, start, strict=True):
            p.copy_(p0)
    out["one_adam_step"] = steps
    return out

"""Per-sample losses agree, sample by sample, with TRL 1.16 (DPO, KTO, ORPO's odds-ratio term) or with
an independent computation from raw logits (GRPO, KTO with the production pairing at batch size 1)."""

from __future__ import annotations

import copy

import pytest
import torch

from daj.train.data import PreferenceData, read_pairs, read_scored
from daj.train.losses import (
    DPO,
    KTO,
    ORPO,
    balanced_kto_weights,
    grpo_advantages,
    grpo_losses,
    kto_losses,
    log1mexp,
)
from daj.train.synthetic import corpus, write_noisy_domain_data

torch.set_num_threads(1)
BETA = 0.1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A saved tiny model (the reference), a perturbed copy (the policy) and synthetic pairs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from daj.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("losses")
    build_tiny_model(root / "model", corpus(), seed=0, vocab_size=400)
    write_noisy_domain_data(root / "pairs", n_per_domain=2, n_meta_per_domain=1)
    tok = AutoTokenizer.from_pretrained(root / "model")
    ref = AutoModelForCausalLM.from_pretrained(root / "model").eval()
    policy = copy.deepcopy(ref)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return root, tok, ref, policy


@pytest.fixture
def fresh(setup):
    """Models loaded anew (the TRL tests hand `setup`'s models to trainers that may change them)."""
    from transformers import AutoModelForCausalLM

    root, tok, _, _ = setup
    ref = AutoModelForCausalLM.from_pretrained(root / "model").eval()
    policy = copy.deepcopy(ref)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return root, tok, ref, policy


def test_dpo_matches_trl(setup, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    root, tok, ref, policy = setup
    rows = read_pairs(root / "pairs" / "lower.jsonl")[:4]
    data = PreferenceData("dpo", tok, 1024, rows, ["alpha", "beta", "gamma"])
    data.compute_reference(ref)
    ours = DPO(beta=BETA).per_sample(policy, data.batch(range(len(rows))))
    assert ours.shape == (4,)

    ds = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    args = DPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], beta=BETA,
                     per_device_train_batch_size=4)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
    theirs = []
    for i in range(len(rows)):  # TRL's loss of a one-pair batch is that pair's loss
        with torch.no_grad():
            theirs.append(float(trainer.compute_loss(trainer.model, trainer.data_collator([trainer.train_dataset[i]]))))
    assert max(abs(t - 0.6931) for t in theirs) > 1e-3  # the perturbation moved the policy off the reference
    assert max(theirs) - min(theirs) > 1e-4  # pairs differ, so a per-sample mix-up would show
    assert ours.detach().tolist() == pytest.approx(theirs, abs=1e-5)


def test_kto_matches_trl(setup, tmp_path):
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    root, tok, ref, policy = setup
    rows = read_scored(root / "pairs" / "lower_scored.jsonl")[:6]  # 3 desirable, 3 undesirable
    rows = [rows[0], rows[1], rows[2], rows[4], rows[5], rows[3]]
    data = PreferenceData("kto", tok, 1024, rows, ["alpha", "beta", "gamma"])
    n = len(rows)
    data.set_kl_partners(tok, 1024, rows, [(i - 1) % n for i in range(n)])  # TRL's in-batch rotation by +1
    data.compute_reference(ref)
    batch = data.batch(range(n))
    assert torch.allclose(batch["class_weight"], torch.ones(n))  # balanced set: weights 1
    ours = KTO(beta=BETA).per_sample(policy, batch).detach()

    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"], "label": r["label"] == "correct"}
                            for r in rows])
    args = KTOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], beta=BETA,
                     per_device_train_batch_size=n)
    trainer = KTOTrainer(model=policy, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
    tbatch = trainer.data_collator([trainer.train_dataset[i] for i in range(n)])
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, tbatch)
    assert float(ours.mean()) == pytest.approx(float(theirs), abs=1e-5)
    # TRL returns the batch mean only; per sample, each loss must be the formula on that sample with
    # the batch's shared reference point z, computed here from raw logits
    z = max(0.0, sum(_logp(policy, tok, r["prompt"], rows[(i - 1) % n]["response"])
                     - _logp(ref, tok, r["prompt"], rows[(i - 1) % n]["response"]) for i, r in enumerate(rows)) / n)
    for i, r in enumerate(rows):
        ratio = _logp(policy, tok, r["prompt"], r["response"]) - _logp(ref, tok, r["prompt"], r["response"])
        des = r["label"] == "correct"
        expected = 1 - _sigmoid(BETA * ((ratio - z) if des else (z - ratio)))
        assert float(ours[i]) == pytest.approx(expected, abs=1e-5)


def _sigmoid(x: float) -> float:
    import math

    return 1 / (1 + math.exp(-x))


def _token_logps(model, tok, prompt: str, response: str, temperature: float = 1.0) -> list[float]:
    """Log-probs of the response tokens (and eos), from one plain forward and a float64 log-softmax over
    the whole vocabulary (logits / temperature): independent of daj.train.logprobs (no chunking, no
    padding, no masks)."""
    text = prompt + response + tok.eos_token
    ids = tok(text, add_special_tokens=False)["input_ids"]
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    start = next((k for k, (a, b) in enumerate(zip(prompt_ids, ids, strict=False)) if a != b), len(prompt_ids))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return [float(logp[t - 1, ids[t]]) for t in range(max(start, 1), len(ids))]


def _logp(model, tok, prompt: str, response: str) -> float:
    return sum(_token_logps(model, tok, prompt, response))


def test_kto_production_pairing_at_batch_size_one(fresh):
    """Production KTO: batch size 1, the KL response is another prompt's (a seeded derangement); each
    loss is the formula with z from that one mismatched pair, computed from raw logits."""
    root, tok, ref, policy = fresh
    rows = read_scored(root / "pairs" / "lower_scored.jsonl")
    rows = [r for k, r in enumerate(rows) if r["label"] == "correct" or k % 4 == 1]  # unbalanced: w_D != w_U
    data = PreferenceData("kto", tok, 1024, rows, ["alpha", "beta", "gamma"], seed=3)
    data.compute_reference(ref)
    n_des = sum(r["label"] == "correct" for r in rows)
    w_des, w_und = balanced_kto_weights(n_des, len(rows) - n_des)
    assert w_des < 1 == w_und
    checked = 0
    for i in range(0, len(rows), 2):
        batch = data.batch([i])
        ours = float(KTO(beta=BETA).per_sample(policy, batch).detach())
        partner_ids = batch["kl_seq"]["input_ids"][0][batch["kl_seq"]["attention_mask"][0].bool()].tolist()
        partner = next(r for r in rows if r["prompt"] != rows[i]["prompt"]
                       and tok(rows[i]["prompt"] + r["response"] + tok.eos_token,
                               add_special_tokens=False)["input_ids"] == partner_ids)
        z = max(0.0, _logp(policy, tok, rows[i]["prompt"], partner["response"])
                - _logp(ref, tok, rows[i]["prompt"], partner["response"]))
        ratio = _logp(policy, tok, rows[i]["prompt"], rows[i]["response"]) - _logp(ref, tok, rows[i]["prompt"],
                                                                                  rows[i]["response"])
        des = rows[i]["label"] == "correct"
        expected = (w_des if des else w_und) * (1 - _sigmoid(BETA * ((ratio - z) if des else (z - ratio))))
        assert ours == pytest.approx(expected, abs=1e-5), i
        checked += 1
    assert checked >= 4


def test_orpo_matches_trl(setup, tmp_path):
    """TRL's ORPO NLL averages over all tokens of the batch, prompt included; ours is the per-example
    response NLL (as in the ORPO paper). The odds-ratio term must agree exactly, and the NLL of a
    one-pair batch must agree once restricted to the same tokens."""
    from datasets import Dataset
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    root, tok, ref, policy = setup
    rows = read_pairs(root / "pairs" / "lower.jsonl")[:4]
    data = PreferenceData("orpo", tok, 1024, rows, ["alpha", "beta", "gamma"])
    batch = data.batch(range(len(rows)))
    ours = ORPO(beta=BETA).per_sample(policy, batch)

    ds = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    args = ORPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], beta=BETA,
                      per_device_train_batch_size=4, max_length=1024)
    trainer = ORPOTrainer(model=policy, args=args, train_dataset=ds, processing_class=tok)
    from daj.train.logprobs import sequence_logps

    with torch.no_grad():
        logps, ntok = sequence_logps(policy, batch["seq"])
    nll = (-logps / ntok)[: len(rows)]
    their_or = []
    for i in range(len(rows)):  # one pair per batch: TRL's odds-ratio term of that pair
        with torch.no_grad():
            theirs, metrics = trainer.get_batch_loss_metrics(
                trainer.model, trainer.data_collator([trainer.train_dataset[i]]))
        their_or.append(float(theirs) - float(metrics["nll_loss"]))
    assert max(their_or) - min(their_or) > 1e-4
    assert (ours - nll).detach().tolist() == pytest.approx(their_or, abs=1e-5)
    # and our NLL is the chosen response's token-mean NLL, computed independently
    for i, r in enumerate(rows):
        tl = _token_logps(policy, tok, r["prompt"], r["chosen"])
        assert float(nll[i]) == pytest.approx(-sum(tl) / len(tl), abs=1e-5)


def test_kto_formula_and_weights():
    logps, ref = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.0])
    des = torch.tensor([True, False])
    out = kto_losses(logps, ref, des, torch.tensor(0.5), beta=0.1, desirable_weight=2.0, undesirable_weight=1.0)
    assert out[0] == pytest.approx(2 * (1 - torch.sigmoid(torch.tensor(0.1 * (1.0 - 0.5)))).item())
    assert out[1] == pytest.approx((1 - torch.sigmoid(torch.tensor(0.1 * (0.5 + 1.0)))).item())


def test_log1mexp_is_stable():
    x = torch.tensor([-1e-6, -0.1, -0.7, -5.0, -50.0], dtype=torch.float64)
    assert torch.allclose(log1mexp(x), torch.log(1 - torch.exp(x)), rtol=1e-6)


def test_grpo_matches_an_independent_computation(fresh):
    """Per response: GRPO's clipped surrogate with group-normalised advantages and the k3 KL, computed
    from raw logits in float64 loops at the sampling temperature (logits / 0.7, as TRL), against
    GRPO.per_sample on a padded batch (old policy != policy != reference, so clipping on both sides and
    the KL term all matter)."""
    import copy
    import math

    from daj.train.losses import GRPO

    root, tok, ref, policy = fresh
    temp = 0.7
    rows = read_scored(root / "pairs" / "lower_scored.jsonl")
    data = PreferenceData("grpo", tok, 1024, rows, ["alpha", "beta", "gamma"], grpo_group=4, temperature=temp)
    data.compute_reference(ref)
    old = copy.deepcopy(policy)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in old.parameters():
            p.add_(0.03 * torch.randn(p.shape, generator=gen))
    units = [0, 1]
    batch = data.batch(units)
    from daj.train.logprobs import token_logps

    with torch.no_grad():
        batch["old_token_logps"], _ = token_logps(old, batch["seq"], temperature=temp)
    eps, kl = 0.2, 0.05
    ours = GRPO(grpo_clip=eps, grpo_kl=kl, temperature=temp).per_sample(policy, batch).detach()
    members = [r for u in units for r in rows if r["group"] == rows[4 * u]["group"]]
    assert len(members) == 8 and ours.shape == (8,)
    clipped = 0
    at_one = []
    for k, r in enumerate(members):
        group = [m for m in members if m["group"] == r["group"]]
        rewards = [m["reward"] for m in group]
        mean = sum(rewards) / len(rewards)
        std = math.sqrt(sum((x - mean) ** 2 for x in rewards) / (len(rewards) - 1))
        adv = (r["reward"] - mean) / (std + 1e-4)


        terms = {}
        for t in (temp, 1.0):
            pol, olds, refs = (_token_logps(m, tok, r["prompt"], r["response"], t) for m in (policy, old, ref))
            terms[t] = []
            for lp, lo, lr in zip(pol, olds, refs, strict=True):
                rho = math.exp(lp - lo)
                clipped += t == temp and not (1 - eps <= rho <= 1 + eps)
                surrogate = min(rho * adv, min(max(rho, 1 - eps), 1 + eps) * adv)
                terms[t].append(-surrogate + kl * (math.exp(lr - lp) - (lr - lp) - 1))
        assert float(ours[k]) == pytest.approx(sum(terms[temp]) / len(terms[temp]), abs=1e-5), k
        at_one.append(sum(terms[1.0]) / len(terms[1.0]))
    assert clipped > 0  # some tokens' ratios left the trust region
    assert max(abs(float(a) - b) for a, b in zip(ours, at_one, strict=True)) > 1e-3  # temperature 1 differs


def test_offline_grpo_takes_a_ratio_of_one_not_the_reference(fresh):
    """Offline rollouts carry no behaviour log-probs: the old policy is the current one (ratio 1), so
    each loss is minus its advantage and the gradient is -A grad(token-mean log pi_T); the reference
    (which differs from the policy here) enters only the KL term."""
    from daj.train.logprobs import token_logps
    from daj.train.losses import GRPO

    root, tok, ref, policy = fresh
    temp = 0.7
    rows = read_scored(root / "pairs" / "lower_scored.jsonl")
    data = PreferenceData("grpo", tok, 1024, rows, ["alpha", "beta", "gamma"], grpo_group=4, temperature=temp)
    data.compute_reference(ref)
    batch = data.batch([0, 1])
    assert "old_token_logps" not in batch and batch["advantages"].abs().sum() > 0
    with torch.no_grad():
        pol, mask = token_logps(policy, batch["seq"], temperature=temp)
    gap = ((pol - batch["ref_token_logps"]).abs() * mask).max()
    assert gap > 0.05  # the reference is not the policy: a ratio to it would not be 1
    head = policy.get_output_embeddings().weight
    loss = GRPO(temperature=temp).per_sample(policy, batch)
    assert torch.allclose(loss.detach(), -batch["advantages"], atol=1e-6)
    (grad,) = torch.autograd.grad(loss.sum(), head)
    logps, mask = token_logps(policy, batch["seq"], temperature=temp)
    pg = -(batch["advantages"] * (logps * mask).sum(1) / mask.sum(1)).sum()
    (expected,) = torch.autograd.grad(pg, head)
    assert torch.allclose(grad, expected, atol=1e-6) and expected.abs().sum() > 0


def test_grpo_advantages_and_surrogate():
    adv = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert adv.sum().abs() < 1e-6 and adv[0] > 0 > adv[1]
    assert torch.equal(grpo_advantages(torch.tensor([1.0, 1.0])), torch.zeros(2))
    logps = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, -1.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    old = torch.tensor([[-1.0, -2.0, 0.0], [-2.0, -2.0, -2.0]])  # second row: ratio e > 1 + eps: clipped
    loss = grpo_losses(logps, old, old, mask, torch.tensor([1.0, 1.0]), clip_eps=0.2)
    loss_v = loss.detach()
    assert float(loss_v[0]) == pytest.approx(-1.0)  # ratio 1, advantage 1, masked token ignored
    assert float(loss_v[1]) == pytest.approx(-1.2)
    loss.sum().backward()
    assert logps.grad[1].abs().sum() == 0  # clipped: no gradient
    assert logps.grad[0, 2] == 0  # masked: no gradient

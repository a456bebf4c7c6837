"""Per-sample losses agree with TRL 1.16 on the same tiny model and batch (all weights 1)."""

from __future__ import annotations

import copy

import pytest
import torch

from daj.train.data import PreferenceData, read_pairs, read_scored
from daj.train.losses import (
    DPO,
    KTO,
    ORPO,
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
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, batch)
    assert abs(float(theirs) - 0.6931) > 1e-3  # the perturbation moved the policy off the reference
    assert float(ours.detach().mean()) == pytest.approx(float(theirs), abs=1e-5)


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
    ours = KTO(beta=BETA).per_sample(policy, batch)

    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"], "label": r["label"] == "correct"}
                            for r in rows])
    args = KTOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], beta=BETA,
                     per_device_train_batch_size=n)
    trainer = KTOTrainer(model=policy, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
    tbatch = trainer.data_collator([trainer.train_dataset[i] for i in range(n)])
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, tbatch)
    assert float(ours.detach().mean()) == pytest.approx(float(theirs), abs=1e-5)


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
    tbatch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    with torch.no_grad():
        theirs, metrics = trainer.get_batch_loss_metrics(trainer.model, tbatch)
    their_or = float(theirs) - float(metrics["nll_loss"])
    from daj.train.logprobs import sequence_logps

    with torch.no_grad():
        logps, ntok = sequence_logps(policy, batch["seq"])
    nll = (-logps / ntok)[: len(rows)]
    assert float((ours - nll).detach().mean()) == pytest.approx(their_or, abs=1e-5)
    assert torch.all(ours > nll)  # the odds-ratio term is positive


def test_kto_formula_and_weights():
    logps, ref = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.0])
    des = torch.tensor([True, False])
    out = kto_losses(logps, ref, des, torch.tensor(0.5), beta=0.1, desirable_weight=2.0, undesirable_weight=1.0)
    assert out[0] == pytest.approx(2 * (1 - torch.sigmoid(torch.tensor(0.1 * (1.0 - 0.5)))).item())
    assert out[1] == pytest.approx((1 - torch.sigmoid(torch.tensor(0.1 * (0.5 + 1.0)))).item())


def test_log1mexp_is_stable():
    x = torch.tensor([-1e-6, -0.1, -0.7, -5.0, -50.0], dtype=torch.float64)
    assert torch.allclose(log1mexp(x), torch.log(1 - torch.exp(x)), rtol=1e-6)


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

"""Micro-batched training: a batch of pairs (or GRPO responses) gives each sample the loss of the
one-pair path; batch x accumulation can be re-split with the same gradients; the response log-probs
never hold the float32 logits of the whole micro-batch (a measured bound)."""

from __future__ import annotations

import copy

import pytest
import torch

from daj.train.data import PreferenceData, to_device
from daj.train.logprobs import token_logps
from daj.train.losses import DPO, GRPO, ORPO
from daj.train.synthetic import corpus, make_rows

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, Qwen3Config

    from daj.models.tiny import train_tokenizer
    from daj.train.lora import add_lora

    tok = train_tokenizer(corpus(), vocab_size=400)
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    model = add_lora(AutoModelForCausalLM.from_config(config), 4, 8, ["q_proj", "v_proj", "down_proj"])
    with torch.no_grad():  # move the adapter off zero so policy != reference
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(0.2 * torch.randn_like(p))
    return model.float().eval(), tok


def _per_sample(objective, model, data, units):
    return objective.per_sample(model, data.batch(units)).detach()


@pytest.mark.parametrize("name", ["dpo", "orpo", "grpo"])
def test_batched_losses_equal_the_one_unit_path(tiny, name):
    """Right padding and the response masks make every sample's loss independent of its batch mates
    (KTO is not in the list: its reference point z is a batch mean by definition)."""
    model, tok = tiny
    pairs, scored = make_rows("lower", ["a", "b"], 4, set(), 0)
    rows = scored if name == "grpo" else pairs
    data = PreferenceData(name, tok, 256, rows, ["a", "b"], grpo_group=4)
    data.compute_reference(model)
    objective = {"dpo": DPO(), "orpo": ORPO(), "grpo": GRPO(grpo_kl=0.1)}[name]
    units = list(range(len(data)))[:4]
    together = _per_sample(objective, model, data, units)
    one_by_one = torch.cat([_per_sample(objective, model, data, [u]) for u in units])
    assert together.shape == one_by_one.shape and together.abs().max() > 0
    assert torch.allclose(together, one_by_one, atol=1e-5, rtol=0), (together - one_by_one).abs().max()
    # the batch really is padded (sequences of different lengths), so the check means something
    lengths = data.batch(units)["seq"]["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()


def _lower_update(model0, data, batch_size: int, accum: int, reweight: str = "none") -> dict[str, torch.Tensor]:
    """The adapter change of ONE lower optimizer step (SGD, rate 1: the change is minus the gradient)
    made of `accum` micro-batches of `batch_size` pairs, through Betty's engine."""
    from daj.config import TrainConfig
    from daj.train.bilevel import build_engine
    from daj.train.data import BatchStream
    from daj.train.weights import make_weight_model

    model = copy.deepcopy(model0).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg = TrainConfig(objective="dpo", steps=accum, lr=1.0, grad_accum=accum,  # upper steps come after it
                      batch_size=batch_size, meta_batch_size=2)
    lower = BatchStream(data, batch_size, seed=5)
    upper = BatchStream(data, 2, seed=6)
    weights = make_weight_model(reweight, ["a", "b"], len(data.instance_ids))
    engine, judge, _ = build_engine(model, weights, lower, upper, DPO().per_sample, cfg, lower_opt=torch.optim.SGD)
    for _ in range(accum):
        engine.global_step += 1
        engine.train_step()
    return {n: p.detach() - before[n] for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("reweight", ["none", "domain"])
def test_batch_times_accumulation_can_be_resplit_with_the_same_gradients(tiny, reweight):
    """The paper's batch 1 x accumulation 16 run as 4 x 4 gives the same update (here 1x4, 2x2, 4x1)."""
    model, tok = tiny
    pairs, _ = make_rows("lower", ["a", "b"], 4, set(), 0)
    data = PreferenceData("dpo", tok, 256, pairs, ["a", "b"])
    data.compute_reference(model)
    ref = _lower_update(model, data, 1, 4, reweight)
    assert max(float(d.abs().max()) for d in ref.values()) > 1e-4
    for b, a in ((2, 2), (4, 1)):
        other = _lower_update(model, data, b, a, reweight)
        for n, d in ref.items():
            assert torch.allclose(other[n], d, atol=1e-6, rtol=1e-4), (b, a, n, (other[n] - d).abs().max())


class _Largest(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the largest vocabulary-wide tensor (last dimension = vocab: logits, their softmax,
    exp and gradients) any operator produces, forward and backward."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.largest, self.live, self.peak_live = vocab, 0, 0, 0

    def _freed(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import weakref

        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == self.vocab:
                nbytes = t.numel() * t.element_size()
                self.largest = max(self.largest, nbytes)
                # live bytes: a tensor autograd keeps for the backward pass stays counted until freed
                self.live += nbytes
                self.peak_live = max(self.peak_live, self.live)
                weakref.finalize(t, self._freed, nbytes)
        return out


def _measure(model, batch, max_tokens: int):
    model.zero_grad()
    with _Largest(model.get_output_embeddings().weight.shape[0]) as mode:
        logps, mask = token_logps(model, batch, max_tokens=max_tokens)
        logps.sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return mode, logps.detach(), grads


def test_logits_memory_is_bounded_by_the_chunk(tiny):
    """A long sequence: the naive path (one chunk) materialises [B, L, V] float32 logits; the chunked
    path never more than [chunk, V], in the forward nor in the backward, with the same values."""
    model, _ = tiny
    model = copy.deepcopy(model).train()
    vocab = model.get_output_embeddings().weight.shape[0]
    n, width, start = 2, 1500, 10
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (n, width), generator=gen)
    attn = torch.ones(n, width, dtype=torch.long)
    resp = torch.zeros(n, width, dtype=torch.bool)
    resp[:, start:] = True
    batch = {"input_ids": ids, "attention_mask": attn, "response_mask": resp}
    naive, naive_logps, naive_grads = _measure(model, batch, max_tokens=n * width)
    chunk = 256
    chunked, logps, grads = _measure(model, batch, max_tokens=chunk)
    full = n * (width - start) * vocab * 4  # float32 logits of every scored position
    assert naive.largest >= full and naive.peak_live >= 2 * full  # logits (and exp) of the whole batch held
    bound = chunk * vocab * 4
    assert chunked.largest <= bound * 1.01 < full / 8, (chunked.largest, full)
    # a few chunk-sized tensors alive at once (logits, exp, their gradients), never the whole batch's;
    # without checkpointing each chunk's logits would stay alive until the backward pass
    assert chunked.peak_live <= 6 * bound < full * 0.6, (chunked.peak_live, full)
    assert torch.allclose(logps, naive_logps, atol=1e-5)
    for g, h in zip(grads, naive_grads, strict=True):
        assert torch.allclose(g, h, atol=1e-5)


def test_online_grpo_batch_carries_everything_the_step_needs(tiny):
    """GRPO responses of several prompts in one forward: the per-response loss of a batch equals the
    one-prompt path (old log-probs recorded with the batch they were sampled in)."""
    from daj.train.rollouts import PromptData, Rollout, RolloutStream

    model, tok = tiny
    _, scored = make_rows("lower", ["a", "b"], 3, set(), 0)
    data = PromptData(tok, 256, scored, ["a", "b"])

    def sampler(rows, n, seed, version):
        g = torch.Generator().manual_seed(seed)
        return [[Rollout(f"checked {'loop ' * int(torch.randint(1, 6, (1,), generator=g))}verdict {k}",
                         float(k % 2), "correct" if k % 2 else "wrong") for k in range(n)] for _ in rows]

    stream = RolloutStream(data, sampler, model, batch_size=3, group=4, seed=0)
    together = stream.make_batch([0, 1, 2], seed=1)
    with torch.no_grad():  # the step's policy moved off the sampling policy (as in darts re-runs)
        moved = copy.deepcopy(model)
        for n, p in moved.named_parameters():
            if "lora_B" in n:
                p.add_(0.3 * torch.randn_like(p))
        loss = GRPO().per_sample(moved, to_device(together, "cpu"))
        singles = []
        for u in range(3):
            one = {k: v for k, v in together.items()}
            sl = slice(4 * u, 4 * u + 4)
            seq = {k: v[sl] for k, v in together["seq"].items()}
            one.update(seq=seq, advantages=together["advantages"][sl])
            one["old_token_logps"], _ = token_logps(model, seq)
            singles.append(GRPO().per_sample(moved, one))
    assert torch.allclose(loss, torch.cat(singles), atol=1e-5)
    assert (loss - GRPO().per_sample(model, together).detach()).abs().max() > 1e-4  # ratio != 1 mattered


def test_online_grpo_scores_at_the_sampling_temperature(tiny):
    """The sampling policy's log-probs are recorded at the judge's temperature, so the first pass of a
    step has a ratio of exactly 1 (each loss is minus its advantage); at temperature 1 it would not."""
    from daj.train.rollouts import PromptData, Rollout, RolloutStream

    model, tok = tiny
    _, scored = make_rows("lower", ["a", "b"], 2, set(), 0)
    data = PromptData(tok, 256, scored, ["a", "b"])

    def sampler(rows, n, seed, version):
        return [[Rollout(f"checked {'loop ' * (k + 1)}verdict", float(k % 2), "wrong") for k in range(n)]
                for _ in rows]

    stream = RolloutStream(data, sampler, model, batch_size=2, group=4, seed=0, temperature=0.7)
    batch = stream.make_batch([0, 1], seed=1)
    with torch.no_grad():
        expected, _ = token_logps(model, batch["seq"], temperature=0.7)
        assert torch.equal(batch["old_token_logps"], expected)
        loss = GRPO(temperature=0.7).per_sample(model, batch)
        assert torch.allclose(loss, -batch["advantages"], atol=1e-6)
        assert (GRPO(temperature=1.0).per_sample(model, batch) + batch["advantages"]).abs().max() > 1e-3

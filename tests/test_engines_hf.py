"""The hf engine on the tiny model: n completions, settings, seeding, continuation scoring."""

from __future__ import annotations

import math

import pytest
from _tiny_model import tiny_engine

from daj.engines.base import Completion, SamplingParams, ScoringEngine
from daj.engines.registry import make_engine
from daj.errors import DajError

CHATS = [[{"role": "user", "content": "def add(a, b):"}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sort a list of numbers."}],
         [{"role": "user", "content": "x"}]]


def test_n_completions_with_token_counts():
    eng = tiny_engine()
    out = eng.generate(CHATS, SamplingParams(n=3, max_new_tokens=6, seed=1))
    assert len(out) == 3 and all(len(c) == 3 for c in out)
    for chat, comps in zip(CHATS, out, strict=True):
        n_prompt = len(eng.tokenizer(eng.render(chat), add_special_tokens=False)["input_ids"])
        for c in comps:
            assert isinstance(c, Completion) and isinstance(c.text, str)
            assert c.prompt_tokens == n_prompt
            assert 1 <= c.completion_tokens <= 6
            assert c.finish_reason == ("length" if c.completion_tokens == 6 else "stop")
    assert len({c.text for c in out[0]}) > 1  # sampled, not copies


def test_seed_reproducible_and_seed_matters():
    eng = tiny_engine()
    p = SamplingParams(n=2, max_new_tokens=5, seed=7)
    texts = lambda r: [c.text for cs in r for c in cs]  # noqa: E731
    a = texts(eng.generate(CHATS, p))
    assert a == texts(eng.generate(CHATS, p))
    assert a != texts(eng.generate(CHATS, SamplingParams(n=2, max_new_tokens=5, seed=8)))


def test_greedy_and_budget():
    eng = tiny_engine()
    out = eng.generate(CHATS[:1], SamplingParams(n=2, temperature=0, max_new_tokens=3))
    assert out[0][0].text == out[0][1].text and out[0][0].completion_tokens <= 3
    # a longer budget continues the same greedy path
    longer = eng.generate(CHATS[:1], SamplingParams(n=1, temperature=0, max_new_tokens=6))[0][0]
    if out[0][0].finish_reason == "length":
        assert longer.completion_tokens > 3


def test_prefix_changes_the_context():
    eng = tiny_engine()
    assert eng.render(CHATS[0], "<think>").endswith("<|im_start|>assistant\n<think>")
    out = eng.generate(CHATS[:1], SamplingParams(n=1, max_new_tokens=4), prefixes=["<selection>"])
    assert out[0][0].prompt_tokens > eng.generate(CHATS[:1], SamplingParams(n=1, max_new_tokens=4))[0][0].prompt_tokens
    with pytest.raises(DajError, match="prefixes"):
        eng.generate(CHATS, SamplingParams(), prefixes=["a"])


def test_score_continuations_matches_token_log_probs():
    import torch

    eng = tiny_engine()
    assert isinstance(eng, ScoringEngine)
    # options of different token lengths (one token up to several): the cached, batched scoring
    # must equal a plain forward pass over context + option, option by option
    options = ["1", "2</selection>", "12", "def f(x): return x"]
    scores = eng.score_continuations(CHATS[0], "<selection>", options)
    assert len(scores) == 4 and all(s < 0 for s in scores)
    ctx = eng.tokenizer(eng.render(CHATS[0], "<selection>"), add_special_tokens=False)["input_ids"]
    lengths = []
    for option, score in zip(options, scores, strict=True):
        opt = eng.tokenizer(option, add_special_tokens=False)["input_ids"]
        lengths.append(len(opt))
        with torch.no_grad():
            logits = eng.model(input_ids=torch.tensor([ctx + opt])).logits[0]
        logp = torch.log_softmax(logits, -1)
        want = sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(opt))
        assert math.isclose(score, want, rel_tol=1e-4, abs_tol=1e-4), option
    assert min(lengths) == 1 and max(lengths) >= 4
    assert eng.prompt_tokens(CHATS[0], "<selection>") == len(ctx)


def test_registry_builds_hf_engine():
    from _tiny_model import tiny_model_dir

    eng = make_engine({"backend": "hf", "model": tiny_model_dir(), "adapter": None, "device": "cpu", "n": 3})
    assert eng.name == tiny_model_dir()
    assert len(eng.generate(CHATS[:1], SamplingParams(n=2, max_new_tokens=2))[0]) == 2
    with pytest.raises(DajError, match="adapter"):
        make_engine({"backend": "hf", "model": tiny_model_dir(), "adapter": "/nonexistent/adapter"})

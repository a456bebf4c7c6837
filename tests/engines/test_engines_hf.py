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


def test_score_continuations_batch_equals_one_prompt_path():
    """Several prompts of different lengths in one padded forward: the one-prompt scores to 1e-5."""
    eng = tiny_engine()
    requests = [(CHATS[0], "<selection>", ["1</selection>", "2</selection>"]),
                (CHATS[1], "<think>short</think>\n<selection>", ["1", "12", "def f(x): return x"]),
                (CHATS[2], "", ["a"]),
                (CHATS[1], "<selection>", []),
                (CHATS[2], "<selection>", ["3</selection>", "1</selection>", "2</selection>"])]
    one = [eng.score_continuations(*r) for r in requests]
    for size in (5, 2):
        got = eng.score_continuations_batch(requests, batch_size=size)
        assert [len(g) for g in got] == [len(o) for o in one]
        for g, o in zip(got, one, strict=True):
            assert all(abs(x - y) <= 1e-5 for x, y in zip(g, o, strict=True)), (g, o)
    # one-token options only: no second forward
    tags = [(c, "<selection>", ["1", "2"]) for c in CHATS]
    assert all(abs(x - y) <= 1e-5 for g, o in zip(eng.score_continuations_batch(tags, batch_size=3),
                                                  [eng.score_continuations(*t) for t in tags], strict=True)
               for x, y in zip(g, o, strict=True))
    with pytest.raises(DajError, match="empty"):
        eng.score_continuations_batch([(CHATS[0], "", ["1"]), (CHATS[1], "", [""])])


def test_many_prompts_in_one_call_follow_the_chunk_seeding_rule():
    """One call with many prompts = one call per batch_size chunk; with batch_size 1, per prompt."""
    from daj.engines.hf import HFEngine

    eng = tiny_engine()  # batch_size 2
    prompts = CHATS + [[{"role": "user", "content": f"task {i}"}] for i in range(3)]
    p = SamplingParams(n=2, max_new_tokens=4, seed=11)
    texts = lambda r: [[c.text for c in cs] for cs in r]  # noqa: E731
    whole = texts(eng.generate(prompts, p))
    assert whole == [t for k in range(0, 6, 2) for t in texts(eng.generate(prompts[k:k + 2], p))]
    single = HFEngine(eng.name, device="cpu", batch_size=1)
    per_prompt = [texts(single.generate([q], p))[0] for q in prompts]
    assert texts(single.generate(prompts, p)) == per_prompt


def test_static_cache_option_gives_the_same_completions():
    """cache: static (behind an option) decodes the same tokens as the default dynamic cache here."""
    from _tiny_model import tiny_model_dir

    from daj.engines.hf import HFEngine

    p = SamplingParams(n=2, max_new_tokens=8, seed=5)
    texts = lambda r: [[c.text for c in cs] for cs in r]  # noqa: E731
    want = texts(tiny_engine().generate(CHATS, p))
    static = HFEngine(tiny_model_dir(), device="cpu", batch_size=2, cache="static", compile="off")
    seen, generate = [], static.model.generate

    def spy(**kw):
        seen.append((kw["generation_config"].cache_implementation, kw["generation_config"].disable_compile))
        return generate(**kw)

    static.model.generate = spy
    assert texts(static.generate(CHATS, p)) == want
    assert seen and set(seen) == {("static", True)}
    for option, value in (("cache", "paged"), ("compile", "always"), ("penalty", "slow")):
        with pytest.raises(DajError, match=option):
            HFEngine(tiny_model_dir(), device="cpu", **{option: value})

"""The hf engine on the tiny model: n completions, settings, seeding, batch invariance, continuation scoring."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from daj.engines.base import Completion, SamplingParams, ScoringEngine
from daj.engines.hf import HFEngine
from daj.engines.registry import make_engine
from daj.errors import DajError

CHATS = [[{"role": "user", "content": "def add(a, b):"}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sort a list of numbers."}],
         [{"role": "user", "content": "x"}]]
# prompts of very different lengths, so that a batch of them is left-padded
VARIED = CHATS + [[{"role": "user", "content": f"task {i}: " + "return sorted(xs) " * (i * 9)}] for i in range(6)]


def texts(result):
    return [[c.text for c in cs] for cs in result]


def test_n_completions_with_token_counts(tiny_engine):
    eng = tiny_engine
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


def test_seed_reproducible_and_seed_matters(tiny_engine):
    eng = tiny_engine
    p = SamplingParams(n=2, max_new_tokens=5, seed=7)
    flat = lambda r: [t for ts in texts(r) for t in ts]  # noqa: E731
    a = flat(eng.generate(CHATS, p))
    assert a == flat(eng.generate(CHATS, p))
    assert a != flat(eng.generate(CHATS, SamplingParams(n=2, max_new_tokens=5, seed=8)))


def test_greedy_and_budget(tiny_engine):
    eng = tiny_engine
    out = eng.generate(CHATS[:1], SamplingParams(n=2, temperature=0, max_new_tokens=3))
    assert out[0][0].text == out[0][1].text and out[0][0].completion_tokens <= 3
    # a longer budget continues the same greedy path
    longer = eng.generate(CHATS[:1], SamplingParams(n=1, temperature=0, max_new_tokens=6))[0][0]
    if out[0][0].finish_reason == "length":
        assert longer.completion_tokens > 3


def test_prefix_changes_the_context(tiny_engine):
    eng = tiny_engine
    assert eng.render(CHATS[0], "<think>").endswith("<|im_start|>assistant\n<think>")
    out = eng.generate(CHATS[:1], SamplingParams(n=1, max_new_tokens=4), prefixes=["<selection>"])
    assert out[0][0].prompt_tokens > eng.generate(CHATS[:1], SamplingParams(n=1, max_new_tokens=4))[0][0].prompt_tokens
    with pytest.raises(DajError, match="prefixes"):
        eng.generate(CHATS, SamplingParams(), prefixes=["a"])


@pytest.mark.parametrize("penalty", [1.05, 1.0])
def test_answers_do_not_depend_on_the_batch(tiny_engine, penalty):
    """A prompt's sampled completions depend on the prompt, the settings and the seed only: batch sizes
    1, 2 and 8 (left-padded chunks of prompts of very different lengths), other neighbours, a prefix."""
    p = SamplingParams(n=3, max_new_tokens=12, seed=3, repetition_penalty=penalty)
    engines = {size: HFEngine.from_model(tiny_engine.model, tiny_engine.tokenizer, batch_size=size)
               for size in (1, 2, 8)}
    want = texts(engines[1].generate(VARIED, p))
    assert len({t for ts in want for t in ts}) > len(VARIED)  # varied answers: the check means something
    for size in (2, 8):
        assert texts(engines[size].generate(VARIED, p)) == want, size
    # other neighbours, another order: each prompt keeps its answers
    shuffled = VARIED[::-1][:5] + [[{"role": "user", "content": "an unrelated neighbour " * 40}]]
    got = texts(engines[8].generate(shuffled, p))
    assert got[:5] == want[::-1][:5]
    alone = [texts(engines[8].generate([chat], p))[0] for chat in VARIED[:4]]
    assert alone == want[:4]
    prefixed = texts(engines[8].generate(VARIED[:3], p, prefixes=["<think>"] * 3))
    assert texts(engines[1].generate(VARIED[2:3], p, prefixes=["<think>"])) == prefixed[2:]


def _peaky_engine(tiny_engine) -> HFEngine:
    """The tiny model with seeded noise on its weights: greedy decoding then writes varied tokens (the
    random tiny model itself writes newlines)."""
    model = copy.deepcopy(tiny_engine.model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=g) * 0.3)
    return HFEngine.from_model(model, tiny_engine.tokenizer, batch_size=4)


def test_greedy_equals_transformers_generate(tiny_engine):
    """The decoding loop against transformers' own `generate` (greedy, repetition penalty): same tokens."""
    eng = _peaky_engine(tiny_engine)
    p = SamplingParams(n=1, temperature=0, max_new_tokens=16, repetition_penalty=1.3)
    ours = [cs[0] for cs in eng.generate(VARIED, p)]
    assert len({c.text for c in ours}) > 3
    for chat, comp in zip(VARIED, ours, strict=True):
        ids = torch.tensor([eng.encode(chat)])
        out = eng.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=16, repetition_penalty=1.3, eos_token_id=eng.eos_ids,
                                 pad_token_id=eng.pad_token_id, top_k=None, top_p=None, temperature=None)
        new = out[0, ids.shape[1]:].tolist()
        stop = next((i for i, t in enumerate(new) if t in eng.eos_ids), None)
        assert eng.tokenizer.decode(new if stop is None else new[:stop], skip_special_tokens=True) == comp.text


def test_top_k_one_samples_the_greedy_tokens(tiny_engine):
    eng = _peaky_engine(tiny_engine)
    greedy = texts(eng.generate(VARIED, SamplingParams(n=1, temperature=0, max_new_tokens=10)))
    assert texts(eng.generate(VARIED, SamplingParams(n=2, temperature=0.7, top_k=1, max_new_tokens=10))) == [
        g * 2 for g in greedy]


def test_draws_follow_the_probabilities(tiny_engine):
    """4,000 first tokens of one prompt (one row each) against the model's probabilities at temperature
    0.8 with top-k 12: Pearson's chi-square stays under its 0.1% critical value, and the top-k cut holds."""
    eng = tiny_engine
    chat = CHATS[1]
    rows = 4000
    out = eng.generate([chat], SamplingParams(n=rows, temperature=0.8, top_k=12, top_p=1.0, repetition_penalty=1.0,
                                               max_new_tokens=1, seed=2))[0]
    ids = torch.tensor([eng.encode(chat)])
    with torch.no_grad():
        logits = eng.model(input_ids=ids).logits[0, -1].double() / 0.8
    top = torch.topk(logits, 12)
    probs = torch.softmax(top.values, -1)
    names = [eng.tokenizer.decode([t], skip_special_tokens=True) for t in top.indices.tolist()]
    counts: dict[str, int] = {}
    for c in out:
        counts[c.text] = counts.get(c.text, 0) + 1
    assert set(counts) <= set(names)  # nothing outside the top 12
    expected: dict[str, float] = {}
    for name, prob in zip(names, probs.tolist(), strict=True):
        expected[name] = expected.get(name, 0.0) + prob * rows
    cells = [k for k, e in expected.items() if e >= 5]
    stat = sum((counts.get(k, 0) - expected[k]) ** 2 / expected[k] for k in cells)
    df = len(cells) - 1
    critical = df * (1 - 2 / (9 * df) + 3.09 * math.sqrt(2 / (9 * df))) ** 3  # Wilson-Hilferty, p = 0.001
    assert df >= 3 and stat < critical, (stat, critical)


def test_score_continuations_matches_token_log_probs(tiny_engine):
    eng = tiny_engine
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


def test_registry_builds_hf_engine(tiny_model):
    eng = make_engine({"backend": "hf", "model": tiny_model, "adapter": None, "device": "cpu", "n": 3})
    assert eng.name == tiny_model
    assert len(eng.generate(CHATS[:1], SamplingParams(n=2, max_new_tokens=2))[0]) == 2
    with pytest.raises(DajError, match="adapter"):
        make_engine({"backend": "hf", "model": tiny_model, "adapter": "/nonexistent/adapter"})
    for option, value in (("batch_size", 0), ("penalty", "slow"), ("cache", "static")):
        with pytest.raises(DajError, match=option):
            make_engine({"backend": "hf", "model": tiny_model, option: value})


def test_score_continuations_batch_equals_one_prompt_path(tiny_engine):
    """Several prompts of different lengths, their options in one batch: the one-prompt scores to 1e-5."""
    eng = tiny_engine
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
    with pytest.raises(DajError, match="empty"):
        eng.score_continuations_batch([(CHATS[0], "", ["1"]), (CHATS[1], "", [""])])


def test_options_scored_after_generation_equal_score_continuations(tiny_engine):
    """`continuations`: the options are scored on the decoding cache, equal to scoring the same prefix
    from scratch (within 1e-5), whether the prefix extends the completion, rewrites its end, or is asked
    twice; completions asked nothing carry no scores."""
    eng = tiny_engine
    options = ["1</selection>", "2</selection>", "10</selection>"]
    asked = []

    def ask(i: int, text: str):
        asked.append(i)
        if i == 2:
            return None
        prefix = text.rstrip() + "\n```\n<selection>" if i == 1 else text + "<selection>"
        return prefix, options

    out = eng.generate(VARIED[:4], SamplingParams(n=3, max_new_tokens=10, seed=4), continuations=ask)
    assert sorted(set(asked)) == [0, 1, 2, 3] and len(asked) == 12
    for i, (chat, comps) in enumerate(zip(VARIED[:4], out, strict=True)):
        for c in comps:
            if i == 2:
                assert "option_scores" not in c.extra
                continue
            want = eng.score_continuations(chat, c.extra["scored_prefix"], options)
            assert c.extra["option_scores"] == pytest.approx(want, abs=1e-5)
    plain = eng.generate(VARIED[:4], SamplingParams(n=3, max_new_tokens=10, seed=4))
    assert texts(plain) == texts(out)  # scoring changes no completion

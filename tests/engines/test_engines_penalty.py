"""FastRepetitionPenalty against transformers' RepetitionPenaltyLogitsProcessor: same scores, same tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from daj.engines.base import SamplingParams
from daj.engines.hf import HFEngine
from daj.engines.penalty import FastRepetitionPenalty, hf_ignores_left_padding

CHATS = [[{"role": "user", "content": "def add(a, b):"}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sort a list of numbers, fast."}],
         [{"role": "user", "content": "x"}]]


def _hf_ignores_ids_beyond_the_scores() -> bool:
    """transformers 5.2x skips ids at or above the scores' width; older versions fail on them."""
    try:
        RepetitionPenaltyLogitsProcessor(1.5)(torch.tensor([[0, 5]]), torch.ones(1, 3))
    except (RuntimeError, IndexError):
        return False
    return True


def _decode_both(batch: int, length: int, vocab: int, penalty: float, pads: list[int] | None, seed: int,
                 steps: int = 12) -> int:
    """Run both processors over `steps` growing sequences; assert bit-equal scores; return #changed."""
    g = torch.Generator().manual_seed(seed)
    # a small id range forces repeats; a few ids at or above the scores' width must be ignored
    ids = torch.randint(0, min(vocab, 40), (batch, length), generator=g)
    beyond = _hf_ignores_ids_beyond_the_scores()
    if beyond:
        ids[0, -1] = vocab + 3
    lengths = None if pads is None else torch.tensor(pads)
    ours = FastRepetitionPenalty(penalty, lengths)
    theirs = RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=lengths)
    changed = 0
    for step in range(steps):
        scores = torch.randn(batch, vocab, generator=g) * 3
        scores[:, 1] = 0.0
        scores[:, 2] = float("-inf")
        want = theirs(ids, scores.clone())
        got = ours(ids, scores.clone())
        assert torch.equal(got, want), f"step {step}"
        changed += int((got != scores).sum())
        # next token: half the time one already seen, otherwise a fresh id (sometimes out of range)
        fresh = torch.randint(0, vocab + 2 if beyond else vocab, (batch,), generator=g)
        old = ids[torch.arange(batch), torch.randint(0, ids.shape[1], (batch,), generator=g)]
        coin = torch.rand(batch, generator=g) < 0.5
        ids = torch.cat([ids, torch.where(coin, old, fresh)[:, None]], dim=1)
    return changed


@pytest.mark.parametrize("penalty", [1.05, 1.5, 0.7])
def test_same_scores_as_transformers_step_by_step(penalty):
    assert _decode_both(batch=5, length=30, vocab=97, penalty=penalty, pads=None, seed=1) > 0


@pytest.mark.skipif(not hf_ignores_left_padding(), reason="this transformers penalises left padding")
def test_left_padding_is_left_out_as_transformers_does():
    # row 2 is all padding (its first tokens come later); row 0 has none
    assert _decode_both(batch=4, length=20, vocab=61, penalty=1.3, pads=[0, 7, 20, 19], seed=2) > 0
    # and it matters: penalising the padded positions would give other scores
    ids = torch.tensor([[5, 5, 6], [7, 8, 9]])
    scores = torch.ones(2, 10)
    with_pad = FastRepetitionPenalty(2.0, torch.tensor([2, 0]))(ids, scores.clone())
    assert with_pad[0, 5] == 1 and with_pad[0, 6] == 0.5
    assert FastRepetitionPenalty(2.0)(ids, scores.clone())[0, 5] == 0.5


def test_rebuilds_when_the_sequence_does_not_grow_by_one():
    ids = torch.tensor([[1, 2, 3]])
    proc = FastRepetitionPenalty(2.0)
    proc(ids, torch.ones(1, 8))
    # a new sequence (another generate call reusing the instance) must not keep the old ids
    out = proc(torch.tensor([[4, 4]]), torch.ones(1, 8))
    assert out[0].tolist() == [1, 1, 1, 1, 0.5, 1, 1, 1]


def _texts(result):
    return [[(c.text, c.completion_tokens, c.finish_reason) for c in cs] for cs in result]


@pytest.mark.parametrize("temperature", [0.7, 0.0])
def test_engine_samples_the_same_tokens_as_transformers_processor(tiny_engine, temperature):
    """Left-padded batches, n > 1: the fast penalty gives exactly the completions of transformers' processor."""
    eng = tiny_engine
    p = SamplingParams(n=2, max_new_tokens=12, seed=3, temperature=temperature, repetition_penalty=1.8)
    assert eng.penalty == "fast"
    fast = eng.generate(CHATS, p)
    theirs = HFEngine.from_model(eng.model, eng.tokenizer, batch_size=eng.batch_size, penalty="hf")
    no_penalty = eng.generate(CHATS, SamplingParams(**{**p.to_dict(), "repetition_penalty": 1.0}))
    assert _texts(fast) == _texts(theirs.generate(CHATS, p))
    assert _texts(fast) != _texts(no_penalty)  # the penalty acts on these prompts

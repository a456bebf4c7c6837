"""Swap-combined selection (bon.swap): a pure position bias cancels, a content preference survives."""

from __future__ import annotations

import math

import pytest
import torch

from daj.config import JudgeConfig
from daj.engines.base import Completion
from daj.judge.prompt import build_messages
from daj.judge.runner import JudgeRunner
from daj.judge.swap import SwapRequest, respond_swapped, swap_consistency, swap_consistent

GOOD = "def f(xs):\n    return sorted(xs)\n"
BAD = "def f(xs):\n    return xs\n"


def problem(i: int) -> dict:
    return {"id": f"t/{i}", "title": f"Sort {i}", "statement": "Return the list sorted.",
            "tests": {"type": "functional", "public": []}}


def good_first(messages) -> bool:
    text = messages[-1]["content"]
    return text.index(GOOD.strip()) < text.index(BAD.strip())


class BiasedJudge:
    """Option scores = a position-1 bonus `bias` plus `content` for the position holding GOOD; in
    mode reason it writes `<selection>1</selection>` (pure position bias) or follows the scores."""

    name = "biased"

    def __init__(self, bias: float, content: float = 0.0, writes: str | None = None):
        self.bias, self.content, self.writes = bias, content, writes

    def score_continuations(self, prompt, prefix, options):
        good_pos = 0 if good_first(prompt) else 1
        return [(self.bias if i == 0 else 0.0) + (self.content if i == good_pos else 0.0) - 5.0
                for i in range(len(options))]

    def generate(self, prompts, params, prefixes=None):
        out = []
        for p in prompts:
            text = "" if self.writes is None else (
                "<selection>1</selection>" if self.writes == "first" else
                f"<selection>{1 if good_first(p) else 2}</selection>")
            out.append([Completion(text, "stop", 10, 3)] * params.n)
        return out

    def close(self):
        pass


def pairs(n: int = 40) -> list[SwapRequest]:
    """n pairs; half of them call (GOOD, BAD) forward, half (BAD, GOOD)."""
    out = []
    for i in range(n):
        a, b = (GOOD, BAD) if i % 2 == 0 else (BAD, GOOD)
        out.append(SwapRequest(build_messages(problem(i), [a, b], 4000), build_messages(problem(i), [b, a], 4000),
                               n=3, seed=i))
    return out


def picked_program(req: SwapRequest, selection: int | None) -> str | None:
    if selection is None:
        return None
    first = GOOD if good_first(req.forward) else BAD
    return first if selection == 1 else (BAD if first == GOOD else GOOD)


def reversed_requests(reqs: list[SwapRequest]) -> list[SwapRequest]:
    return [SwapRequest(r.backward, r.forward, r.n, r.seed) for r in reqs]


@pytest.mark.parametrize("sample", [False, True])
def test_pure_position_bias_cancels(sample):
    runner = JudgeRunner(BiasedJudge(bias=30.0), JudgeConfig(mode="select", force_sampling=sample, temperature=1.0, force_selection=False))
    reqs = pairs()
    choices, stats = respond_swapped(runner, reqs)
    flat = [(r, c) for r, cs in zip(reqs, choices, strict=True) for c in cs]
    # each order alone: always position 1, so half right, and the orders never agree
    assert all(c.forward.selection == 1 and c.backward.selection == 1 for _, c in flat)
    assert swap_consistency((c.forward.selection, c.backward.selection) for _, c in flat) == 0.0
    for order in ("forward", "backward"):  # 50% accuracy in each order
        right = [picked_program(SwapRequest(getattr(r, order), None), getattr(c, order).selection) == GOOD
                 for r, c in flat]
        assert sum(right) / len(right) == 0.5
    # combined: the bias cancels exactly, so the two programs score the same ...
    assert all(c.method == "logprob" and c.scores[0] == pytest.approx(c.scores[1]) for _, c in flat)
    # ... and the choice does not depend on which order the caller calls forward
    again, _ = respond_swapped(runner, reversed_requests(reqs))
    for r, cs, cs2 in zip(reqs, choices, again, strict=True):
        assert [picked_program(r, c.selection) for c in cs] == [
            picked_program(SwapRequest(r.backward, r.forward), c.selection) for c in cs2]
    good = sum(picked_program(r, c.selection) == GOOD for r, c in flat)
    assert 0 < good < len(flat)  # neither position nor program wins systematically
    assert stats.model_calls == 2 * len(reqs)  # both orders, one scoring each (select mode)


@pytest.mark.parametrize("sample", [False, True])
def test_content_preference_survives_a_stronger_position_bias(sample):
    # bias 3 > content 1: each order alone always picks position 1 (50% accuracy); combined picks GOOD
    runner = JudgeRunner(BiasedJudge(bias=3.0, content=1.0),
                         JudgeConfig(mode="select", force_sampling=sample, temperature=0.05, force_selection=False))
    reqs = pairs()
    choices, _ = respond_swapped(runner, reqs)
    for r, cs in zip(reqs, choices, strict=True):
        for c in cs:
            assert c.forward.selection == 1 and not c.consistent
            assert c.scores[0] - c.scores[1] == pytest.approx(2.0 if good_first(r.forward) else -2.0)
            assert picked_program(r, c.selection) == GOOD


def test_reasoning_mode_votes_and_forced_scores():
    reqs = pairs(20)
    # a judge that writes its own tag for position 1: the orders disagree, a seeded order-free coin decides
    runner = JudgeRunner(BiasedJudge(bias=0.0, writes="first"), JudgeConfig(max_new_tokens=8, force_selection=False, force_sampling=False))
    choices, _ = respond_swapped(runner, reqs)
    again, _ = respond_swapped(runner, reversed_requests(reqs))
    assert all(c.method == "vote" and c.tie and not c.consistent for cs in choices for c in cs)
    for r, cs, cs2 in zip(reqs, choices, again, strict=True):
        assert [picked_program(r, c.selection) for c in cs] == [
            picked_program(SwapRequest(r.backward, r.forward), c.selection) for c in cs2]
    picks = {picked_program(r, c.selection) for r, cs in zip(reqs, choices, strict=True) for c in cs}
    assert picks == {GOOD, BAD}
    # a judge that names GOOD in both orders: consistent votes
    runner = JudgeRunner(BiasedJudge(bias=0.0, writes="content"), JudgeConfig(max_new_tokens=8, force_selection=False, force_sampling=False))
    choices, _ = respond_swapped(runner, reqs)
    assert all(c.consistent and not c.tie and picked_program(r, c.selection) == GOOD
               for r, cs in zip(reqs, choices, strict=True) for c in cs)
    # a judge that writes no tag, completed by forced selection: the forced log-probabilities are summed
    runner = JudgeRunner(BiasedJudge(bias=3.0, content=1.0, writes=None),
                         JudgeConfig(max_new_tokens=8, force_selection=True, force_sampling=False))
    choices, _ = respond_swapped(runner, reqs)
    assert all(c.method == "logprob" and c.forward.forced and picked_program(r, c.selection) == GOOD
               for r, cs in zip(reqs, choices, strict=True) for c in cs)


def test_swap_consistency_helpers():
    assert swap_consistent(1, 2) and swap_consistent(2, 1)
    assert not swap_consistent(1, 1) and not swap_consistent(None, None) and not swap_consistent(1, None)
    assert swap_consistency([(1, 2), (1, 1), (2, 1), (None, 2)]) == 0.5 and swap_consistency([]) is None


def test_on_the_real_tiny_engine_the_combination_is_the_sum_of_both_orders(tiny_engine):

    from daj.data.humaneval import load_humaneval_package

    torch.set_num_threads(1)
    engine = tiny_engine
    runner = JudgeRunner(engine, JudgeConfig(mode="select", force_selection=False, force_sampling=False))
    probs = load_humaneval_package()[:3]
    reqs = []
    for p in probs:
        a, b = p["reference"], p["prompt"] + "    return None\n"
        reqs.append(SwapRequest(build_messages(p, [a, b], 2000), build_messages(p, [b, a], 2000), n=1, seed=0))
    choices, _ = respond_swapped(runner, reqs)
    again, _ = respond_swapped(runner, reversed_requests(reqs))
    for r, [c], [c2] in zip(reqs, choices, again, strict=True):
        fwd = engine.score_continuations(r.forward, "<selection>", ["1</selection>", "2</selection>"])
        bwd = engine.score_continuations(r.backward, "<selection>", ["1</selection>", "2</selection>"])
        norm = [math.log(sum(math.exp(x) for x in fwd)), math.log(sum(math.exp(x) for x in bwd))]
        expect = (fwd[0] - norm[0] + bwd[1] - norm[1], fwd[1] - norm[0] + bwd[0] - norm[1])
        assert c.scores == pytest.approx(expect, abs=1e-6)
        assert c.selection == (1 if expect[0] > expect[1] else 2)
        assert c2.selection == 3 - c.selection  # the same program, whichever order is called forward

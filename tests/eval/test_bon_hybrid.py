"""The hybrid Best-of-N method: the judge votes among the public-test passers only, all candidates
when none passes; no judge call when one passes them or when their verdicts agree."""

from __future__ import annotations

import re

import pytest

from daj.config import JudgeConfig
from daj.data.pools import PoolCandidate
from daj.engines.base import Completion
from daj.eval.bon import evaluate_policy, hybrid_pool
from daj.judge.runner import JudgeRunner


class Recorder:
    """An engine double that picks the candidate whose code says `good` (else position 1) and records
    which programs each prompt showed."""

    name = "recorder"

    def __init__(self):
        self.shown: list[tuple[str, ...]] = []

    def generate(self, prompts, params, prefixes=None):
        out = []
        for chat in prompts:
            blocks = re.findall(r"## Candidate (\d+)\n```python\n(.*?)\n```", chat[-1]["content"], re.DOTALL)
            self.shown.append(tuple(code for _, code in blocks))
            pick = next((int(k) for k, code in blocks if "good" in code), 1)
            out.append([Completion(f"<selection>{pick}</selection>", "stop", 20, 3)] * params.n)
        return out

    def close(self):
        pass


def cand(i: int, passed: bool, public: bool, word: str = "x") -> PoolCandidate:
    return PoolCandidate("p", i, f"def f():\n    return '{word}{i}'\n", passed, public)


PROBLEM = {"id": "t/0", "title": "T", "platform": "atcoder", "difficulty": "easy", "prompt": "solve",
           "starter_code": "", "tests": {"type": "stdin", "public": []}}


def run(cands: list[PoolCandidate], rounds: int = 6, seed: int = 0):
    engine = Recorder()
    res = evaluate_policy("p", [PROBLEM], {"t/0": cands}, JudgeRunner(engine, JudgeConfig(max_new_tokens=8, force_selection=False, force_sampling=False)),
                          rounds, seed, progress=False)
    rows = {r["method"]: r for r in res.rows}
    return res, rows, engine


def hybrid_calls(res) -> int:
    return res.cost["methods"]["hybrid"]["model_calls"] + res.cost["methods"]["hybrid"]["cache_hits"]


def test_pool_rule():
    cands = [cand(0, False, False), cand(1, True, True), cand(2, False, True)]
    assert [c.index for c in hybrid_pool(cands)] == [1, 2]
    none_public = [cand(0, False, False), cand(1, True, False)]
    assert hybrid_pool(none_public) == none_public  # the fallback: every candidate


def test_votes_only_among_public_passers():
    # the good program fails the public tests: the judge alone picks it, the hybrid cannot
    cands = [cand(0, True, True), cand(1, False, True), cand(2, False, False, "good")]
    res, rows, engine = run(cands)
    public_codes = {cands[0].code.strip(), cands[1].code.strip()}
    hybrid_prompts = engine.shown[-res.cost["methods"]["hybrid"]["model_calls"]:]
    assert hybrid_prompts and all({s.strip() for s in shown} <= public_codes for shown in hybrid_prompts)
    assert rows["judge"]["picked"] == 2 and rows["judge"]["verdict"] == 0.0
    assert rows["hybrid"]["picked"] in (0, 1) and rows["hybrid"]["judge_skipped"] is False
    votes = [int(v) for v in rows["hybrid"]["votes"].split(";")]
    assert len(votes) == 2 and sum(votes) == 6  # two candidates voted on, one vote per round


def test_fallback_to_all_candidates_when_none_passes_the_public_tests():
    cands = [cand(0, False, False), cand(1, True, False, "good"), cand(2, False, False)]
    res, rows, engine = run(cands)
    assert rows["hybrid"]["picked"] == rows["judge"]["picked"] == 1 and rows["hybrid"]["verdict"] == 1.0
    assert len(rows["hybrid"]["votes"].split(";")) == 3
    assert hybrid_calls(res) > 0  # the same vote as the judge's: asked again (or served by the cache)
    assert res.summary["hybrid"] == res.summary["judge"]


@pytest.mark.parametrize("public", [[True, False, False], [False, True, False], [False, False, True]])
def test_no_judge_call_with_one_public_passer(public):
    cands = [cand(i, i == 1, pub) for i, pub in enumerate(public)]
    res, rows, engine = run(cands)
    only = public.index(True)
    assert rows["hybrid"]["picked"] == only and rows["hybrid"]["judge_skipped"] is True
    assert rows["hybrid"]["verdict"] == float(only == 1) and rows["hybrid"]["judge_responses"] == 0
    assert hybrid_calls(res) == 0 and res.cost["hybrid_skipped"]["problems"] == 1
    assert rows["judge"]["judge_skipped"] is False  # the judge alone still votes over all three


@pytest.mark.parametrize("passed", [[True, True, False], [False, False, True]])
def test_no_judge_call_when_the_public_passers_agree(passed):
    cands = [cand(i, p, i < 2) for i, p in enumerate(passed)]
    res, rows, _ = run(cands)
    assert rows["hybrid"]["judge_skipped"] is True and hybrid_calls(res) == 0
    assert rows["hybrid"]["verdict"] == float(passed[0])
    assert res.cost["hybrid_skipped"] == {"problems": 1, "all_pass": int(passed[0]), "all_fail": int(not passed[0]),
                                          "model_calls": 0, "responses": 0}

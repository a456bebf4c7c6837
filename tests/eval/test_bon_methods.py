"""Best-of-N methods, exact subset expectations, judge voting through the runner, and bad input."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest

from daj.config import JudgeConfig
from daj.data.pools import PoolCandidate, load_pool
from daj.engines.base import Completion
from daj.errors import DajError
from daj.eval.bon import evaluate_policy, static_picks
from daj.eval.passk import pass_at_k, public_tests_expectation, subset_public_tests
from daj.eval.scaling import scaling_n, scaling_r, static_at_size, subset_first
from daj.io import write_jsonl
from daj.judge.runner import JudgeRunner


def cand(i, passed, public, code=None):
    return PoolCandidate("p", i, code or f"def f():\n    return {i}\n", passed, public)


def brute_force(cands, size, method):
    """Average over every subset of `size` (and every uniform pick inside it)."""
    total = 0.0
    subsets = list(itertools.combinations(cands, size))
    for sub in subsets:
        passed = [c.passed for c in sub]
        if method == "oracle":
            total += any(passed)
        elif method == "first":
            total += sub[0].passed
        elif method == "random":
            total += sum(passed) / len(passed)
        else:
            total += public_tests_expectation(passed, [c.public_passed for c in sub])
    return total / len(subsets)


@pytest.mark.parametrize("pattern", ["TT FT TF FF FF TT", "FF FF FT", "TF TF TT", "FT FT", "TT TT TT TT"])
def test_subset_expectations_match_enumeration(pattern):
    cands = [cand(i, s[0] == "T", s[1] == "T") for i, s in enumerate(pattern.split())]
    for size in range(1, len(cands) + 1):
        exact = static_at_size(cands, size)
        for method in ("random", "oracle", "first", "public_tests"):
            assert exact[method] == pytest.approx(brute_force(cands, size, method), abs=1e-12), (method, size)


def test_closed_forms():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 5, 1) == 1.0
    assert subset_first([False, True, False], 1) == pytest.approx(1 / 3)
    assert subset_public_tests([True, False], [False, False], 1) == pytest.approx(0.5)


def test_static_picks():
    picks = {p.method: p for p in static_picks([cand(0, False, True), cand(1, True, True), cand(2, False, False)])}
    assert picks["random"].expected == pytest.approx(1 / 3)
    assert picks["oracle"].expected == 1.0
    assert picks["first"].expected == 0.0 and picks["first"].picked == 0
    assert picks["public_tests"].expected == pytest.approx(0.5)


class CodeReadingJudge:
    """A double that prefers the candidate whose code contains 'good' (position 1 on ties)."""

    name = "code-reading"

    def __init__(self):
        self.prompts = 0

    def generate(self, prompts, params, prefixes=None):
        out = []
        for chat in prompts:
            self.prompts += 1
            blocks = re.findall(r"## Candidate (\d+)\n```python\n(.*?)\n```", chat[-1]["content"], re.DOTALL)
            pick = next((int(k) for k, code in blocks if "good" in code), 1)
            out.append([Completion(f"Reviewed. <selection>{pick}</selection>", "stop", 50, 5)] * params.n)
        return out

    def close(self):
        pass


def problems_and_pools():
    problems = [{"id": f"t/{i}", "title": f"T{i}", "platform": "humaneval", "difficulty": d, "prompt": "solve",
                 "starter_code": "", "tests": {"type": "humaneval", "public": []}}
                for i, d in enumerate(["easy", "easy", "medium", "hard"])]
    pools = {
        "t/0": [cand(0, False, True), cand(1, True, True, "def good():\n    return 1\n"), cand(2, False, False)],
        "t/1": [cand(0, False, False), cand(1, False, False)],
        "t/2": [cand(0, True, True, "def good():\n    return 2\n"), cand(1, True, True, "def good():  # same\n  return 2")],
        # t/3 has no candidates: scored 0 everywhere
    }
    return problems, pools


def test_evaluate_policy_with_a_judge():
    problems, pools = problems_and_pools()
    engine = CodeReadingJudge()
    runner = JudgeRunner(engine, JudgeConfig(max_new_tokens=16, force_selection=False, force_sampling=False))
    res = evaluate_policy("p", problems, pools, runner, rounds=8, seed=0, progress=False)
    s = res.summary
    assert set(s) == {"random", "oracle", "first", "public_tests", "judge", "hybrid"}
    assert s["judge"] == {"overall": 50.0, "easy": 50.0, "medium": 100.0, "hard": 0.0, "n": 4}
    assert s["hybrid"] == s["judge"]  # t/0: the good program passes the public tests too
    assert s["oracle"]["overall"] == 50.0 and s["random"]["easy"] == pytest.approx(100 / 6, abs=1e-3)
    assert s["first"]["overall"] == 25.0
    # t/2's two candidates are the same program: no judge call
    assert res.cost["judge_per_problem"]["t/2"]["responses"] == 0
    assert res.cost["missing_problems"] == 1
    judge_rows = {r["problem_id"]: r for r in res.rows if r["method"] == "judge"}
    assert judge_rows["t/0"]["picked"] == 1 and judge_rows["t/0"]["verdict"] == 1.0
    votes = [int(v) for v in judge_rows["t/0"]["votes"].split(";")]
    assert votes[1] == max(votes) and sum(votes) <= 8
    calls = engine.prompts
    methods = res.cost["methods"]
    assert calls == methods["judge"]["model_calls"] + methods["hybrid"]["model_calls"] > 0
    # the same run again hits the cache: no model call
    again = evaluate_policy("p", problems, pools, runner, rounds=8, seed=0, progress=False)
    assert engine.prompts == calls and again.summary == res.summary

    rows_r = scaling_r("p", problems, pools, 8, res.votes, seed=0)
    judge_r = {r["rounds"]: r["overall"] for r in rows_r if r["method"] == "judge"}
    assert sorted(judge_r) == list(range(1, 9)) and judge_r[8] == s["judge"]["overall"]

    def subset_judge(problem, subset, size):
        result = evaluate_policy("p", [problem], {problem["id"]: subset}, runner, 8, 0, progress=False)
        return {m: result.summary[m]["overall"] / 100 for m in ("judge", "hybrid")}

    rows_n = scaling_n("p", problems, pools, [1, 2, 3], res.votes, subset_judge, seed=0)
    by = {(r["method"], r["n"]): r["overall"] for r in rows_n}
    assert by[("judge", 3)] == s["judge"]["overall"] and by[("oracle", 3)] == s["oracle"]["overall"]
    assert by[("hybrid", 3)] == s["hybrid"]["overall"]
    assert by[("judge", 1)] == by[("random", 1)]
    assert by[("oracle", 1)] == pytest.approx(s["random"]["overall"])


def test_voting_is_seeded():
    problems, pools = problems_and_pools()
    pools["t/1"] = [cand(i, i == 3, True) for i in range(5)]
    runner = JudgeRunner(CodeReadingJudge(), JudgeConfig(force_selection=False, force_sampling=False))
    a = evaluate_policy("p", problems, pools, runner, 4, seed=1, progress=False)
    b = evaluate_policy("p", problems, pools, runner, 4, seed=1, progress=False)
    assert a.rows == b.rows
    picks = {evaluate_policy("p", problems, pools, runner, 4, seed=s, progress=False).votes["t/1"].winner
             for s in range(12)}
    assert len(picks) > 1  # without a preference, different seeds pick different candidates
    assert np.isfinite(a.summary["judge"]["overall"])


def test_swap_judges_every_pair_in_both_orders():
    """bon.swap: each drawn pair is asked as (A, B) and (B, A); the answers are combined (daj.judge.swap)."""
    problems, pools = problems_and_pools()

    class Recording(CodeReadingJudge):
        def __init__(self):
            super().__init__()
            self.shown: list[tuple[str, str]] = []

        def generate(self, prompts, params, prefixes=None):
            for chat in prompts:
                blocks = re.findall(r"## Candidate \d+\n```python\n(.*?)\n```", chat[-1]["content"], re.DOTALL)
                self.shown.append(tuple(blocks))
            return super().generate(prompts, params, prefixes)

    settings = JudgeConfig(force_selection=False, force_sampling=False)
    plain = evaluate_policy("p", problems, pools, JudgeRunner(CodeReadingJudge(), settings), 8, 0, progress=False)
    engine = Recording()
    swapped = evaluate_policy("p", problems, pools, JudgeRunner(engine, settings), 8, 0, progress=False, swap=True)
    assert engine.shown and set(engine.shown) == {(b, a) for a, b in engine.shown}  # both orders of every pair
    for pid in ("t/0",):
        assert swapped.cost["judge_per_problem"][pid]["responses"] == 2 * plain.cost["judge_per_problem"][pid]["responses"]
    # the content-reading judge names the good program in both orders: the combined vote keeps it
    picked = {r["problem_id"]: r["picked"] for r in swapped.rows if r["method"] == "judge"}
    assert picked["t/0"] == 1 and swapped.summary["judge"]["overall"] == plain.summary["judge"]["overall"]


def test_load_pool_errors(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"problem_id": "t/0", "policy": "p", "index": 0, "code": "x"},
                                       {"problem_id": "t/0", "policy": "p", "index": 1, "code": "y"}])
    write_jsonl(tmp_path / "v.jsonl", [{"problem_id": "t/0", "index": 0, "passed": True, "public_passed": True}])
    with pytest.raises(DajError, match="no verdict for candidate 1"):
        load_pool(tmp_path / "c.jsonl", tmp_path / "v.jsonl", "p")
    write_jsonl(tmp_path / "v.jsonl", [{"problem_id": "t/0", "index": 0, "passed": "yes", "public_passed": True}])
    with pytest.raises(DajError, match=r"v.jsonl:1.*passed"):
        load_pool(tmp_path / "c.jsonl", tmp_path / "v.jsonl", "p")
    write_jsonl(tmp_path / "v.jsonl", [{"problem_id": "t/0", "index": i, "passed": i == 1, "public_passed": True}
                                       for i in (1, 0)])
    pools = load_pool(tmp_path / "c.jsonl", tmp_path / "v.jsonl", "p")
    assert [c.index for c in pools["t/0"]] == [0, 1] and pools["t/0"][1].passed


def test_unanimous_problems_skip_the_judge(monkeypatch):
    """All-pass and all-fail pools make no judge call and score what a full vote would give."""
    import daj.eval.bon as bon

    problems, pools = problems_and_pools()
    for p in problems:
        p["prompt"] = f"solve {p['id']}"  # tells the judge's prompts apart per problem
    pools["t/3"] = [cand(i, True, True, f"def good():\n    return {i}\n") for i in range(3)]  # all pass, distinct
    unanimous = {"t/1", "t/2", "t/3"}

    class Counting(CodeReadingJudge):
        def __init__(self):
            super().__init__()
            self.by_problem = Counter()

        def generate(self, prompts, params, prefixes=None):
            for chat in prompts:
                self.by_problem[re.search(r"solve (t/\d)", chat[-1]["content"]).group(1)] += 1
            return super().generate(prompts, params, prefixes)

    engine = Counting()
    res = evaluate_policy("p", problems, pools, JudgeRunner(engine, JudgeConfig(force_selection=False, force_sampling=False)), 8, seed=0, progress=False)
    assert set(engine.by_problem) == {"t/0"} and engine.by_problem["t/0"] > 0
    assert set(res.votes) == {"t/0", "hybrid:t/0"}
    rows = {r["problem_id"]: r for r in res.rows if r["method"] == "judge"}
    assert {pid for pid, r in rows.items() if r["judge_skipped"]} == unanimous
    assert rows["t/3"]["verdict"] == 1.0 and rows["t/1"]["verdict"] == 0.0 and rows["t/3"]["judge_responses"] == 0
    assert all(r["judge_skipped"] == "" for r in res.rows if r["method"] not in ("judge", "hybrid"))
    assert res.cost["judge_skipped"] == {"problems": 3, "all_pass": 2, "all_fail": 1, "model_calls": 0,
                                         "responses": 0}
    assert all(res.cost["judge_per_problem"][pid]["model_calls"] == 0 for pid in unanimous)
    assert res.cost["methods"]["judge"]["model_calls"] + res.cost["methods"]["hybrid"]["model_calls"] == engine.prompts

    # the same evaluation without skipping: the judge votes on every pool, pass@1 is the same
    monkeypatch.setattr(bon, "unanimous_verdict", lambda cands: None)
    full_engine = Counting()
    full = evaluate_policy("p", problems, pools, JudgeRunner(full_engine, JudgeConfig(force_selection=False, force_sampling=False)), 8, seed=0,
                           progress=False)
    assert {"t/0", "t/1", "t/3"} <= set(full_engine.by_problem)  # t/2's two programs are one: no call
    assert full.summary == res.summary and not any(r["judge_skipped"] for r in full.rows if r["method"] == "judge")
    monkeypatch.undo()
    # the rounds curve reads the main votes: a skipped problem scores its common verdict at every r,
    # which is what the full votes give after any number of rounds
    rows_r = scaling_r("p", problems, pools, 8, res.votes, seed=0)
    assert rows_r == scaling_r("p", problems, pools, 8, full.votes, seed=0)
    runner = JudgeRunner(engine, JudgeConfig(force_selection=False, force_sampling=False))

    def subset_judge(problem, subset, size):
        result = evaluate_policy("p", [problem], {problem["id"]: subset}, runner, 8, size, progress=False)
        return {m: result.summary[m]["overall"] / 100 for m in ("judge", "hybrid")}

    rows_n = scaling_n("p", problems, pools, [1, 2, 3], res.votes, subset_judge, seed=0)
    by = {(r["method"], r["n"]): r["overall"] for r in rows_n}
    assert by[("judge", 3)] == res.summary["judge"]["overall"] and set(engine.by_problem) == {"t/0"}

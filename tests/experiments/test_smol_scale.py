"""The scaled smol experiment's metrics from raw judge scores (experiments.smol.profiles): position bias,
the swap-combined judge, the exact Best-of-N values, the hybrid, and the report."""

from __future__ import annotations

import json

import pytest

from daj.data.pools import PoolCandidate
from experiments.smol.profiles import answer_tables, build_records, evaluate_scores, ordered_pairs_to_score
from experiments.smol.report import render_scale


def cand(i: int, passed: bool, public: bool) -> PoolCandidate:
    return PoolCandidate("lcb3", i, f"print({i})\n", passed, public)


def world(n: int = 10):
    """n contested problems (pass, fail), one unanimous all-pass problem, one without candidates."""
    problems = [{"id": f"lcb/{i}", "difficulty": "easy" if i % 2 else "hard"} for i in range(n + 2)]
    pools = {f"lcb/{i}": [cand(0, i % 3 != 0, True), cand(1, i % 3 == 0, i % 3 == 0)] for i in range(n)}
    pools[f"lcb/{n}"] = [cand(0, True, True), cand(1, True, False)]
    return problems, pools


def scores_for(problems, pools, bias: float, content: float) -> list[dict]:
    """log p(tag 1) = bias + content * [a passes], log p(tag 2) = content * [b passes]."""
    rows = []
    for problem, a, b in ordered_pairs_to_score(problems, pools):
        cands = pools[problem["id"]]
        rows.append({"problem_id": problem["id"], "a": a, "b": b, "logp1": bias + content * cands[a].passed,
                     "logp2": content * cands[b].passed})
    return rows


def test_only_contested_problems_are_scored():
    problems, pools = world(4)
    todo = ordered_pairs_to_score(problems, pools)
    assert len(todo) == 4 * 2 and {p["id"] for p, _, _ in todo} == {f"lcb/{i}" for i in range(4)}


def test_pure_position_bias_and_the_swap_combination():
    problems, pools = world(12)
    res = evaluate_scores(problems, pools, scores_for(problems, pools, bias=3.0, content=0.0), rounds=3)
    pw = res["pairwise"]
    assert pw["accuracy"] == 0.5 and pw["position1_rate"] == 1.0 and pw["swap_consistency"] == 0.0
    assert pw["accuracy_by_order"] == {"pass_first": 1.0, "pass_second": 0.0}
    assert pw["swap_combined_accuracy"] == 0.5  # the bias cancels and nothing is left: a tie, half a point
    # a small content signal under the same bias: greedy still always says 1, the swap sees the content
    res = evaluate_scores(problems, pools, scores_for(problems, pools, bias=3.0, content=0.1), rounds=3)
    assert res["pairwise"]["accuracy"] == 0.5 and res["pairwise"]["swap_combined_accuracy"] == 1.0
    assert res["pairwise"]["swap_combined_accuracy_ci95"] == [1.0, 1.0]
    bon = res["bon"]
    # 12 contested + 1 all-pass + 1 empty: 8 of the contested pass with candidate 0, 4 with candidate 1
    assert bon["oracle"]["overall"] == round(100 * 13 / 14, 4)
    # the always-1 judge: each of the two candidates gets a round's vote with probability 1/2, R = 3
    # is odd (no ties), so the winner is a fair coin: 1/2 per contested problem
    assert bon["judge"]["overall"] == round(100 * (12 * 0.5 + 1) / 14, 4)
    assert bon["judge_swap"]["overall"] == bon["oracle"]["overall"]
    # hybrid: problems 1, 2, 4, 5, ... have one public passer (the passing one): no judge needed, it wins;
    # problems 0, 3, 6, 9 have two public passers and the always-1 judge
    assert bon["hybrid"]["overall"] == round(100 * (8 + 4 * 0.5 + 1) / 14, 4)
    assert bon["hybrid_swap"]["overall"] == bon["oracle"]["overall"]
    assert res["bon_judge_calls"] == {"judge": 12 * 3, "hybrid": 4 * 3}


def test_answer_tables():
    lp = {(0, 1): (0.0, -1.0), (1, 0): (-2.0, 0.0)}
    greedy, swap = answer_tables(2, lp)
    assert greedy == [[None, 1.0], [0.0, None]]
    # 0's summed log-prob: 0 (first in (0, 1)) + 0 (second in (1, 0)); 1's: -1 + -2
    assert swap == [[None, 1.0], [0.0, None]]


class _Tok:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return "|".join(m["content"][:20] for m in messages) + "<assistant>"


def test_training_records_are_every_mixed_pair_in_both_orders():
    problems, pools = world(3)
    for p in problems:
        p.update(domain="atcoder/easy", title="t", prompt="solve", tests={"type": "stdin", "public": []})
    records = build_records("lower", problems, pools, _Tok(), 2000)
    assert len(records) == 3 * 2 and len({r["id"] for r in records}) == 6
    for r in records:
        right = r["correct_position"]
        assert r["chosen"] == f"<selection>{right}</selection>" and r["rejected"] == f"<selection>{3 - right}</selection>"
    assert sorted(r["correct_position"] for r in records) == [1, 1, 1, 2, 2, 2]


def test_render_scale(tmp_path):
    problems, pools = world(6)
    res = evaluate_scores(problems, pools, scores_for(problems, pools, bias=1.0, content=2.0), rounds=3)
    (tmp_path / "results.json").write_text(json.dumps({"judges": {"base": res}, "seconds": 12.5,
                                                       "references_all_test_problems": res["bon"]}))
    (tmp_path / "config.json").write_text(json.dumps({"profile": "cpu", "settings": {"rounds": 3},
                                                      "machine": {"date": "2026-11-30 03:00 UTC"}}))
    (tmp_path / "runs/none-s0").mkdir(parents=True)
    (tmp_path / "runs/none-s0/train.json").write_text(json.dumps({"steps": 2, "final_loss": 0.69}))
    text = render_scale(tmp_path)
    assert "| base | 100.0 | [100.0, 100.0] |" in text and "| none-s0 | 2 | 0.69 |" in text
    assert f"| hybrid, base | {res['bon']['hybrid']['overall']:.1f} |" in text
    with pytest.raises(Exception, match="results.json"):
        render_scale(tmp_path / "absent")

"""The `file` backend: LCB eval_all pools and our candidates JSONL."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from daj.errors import DajError
from daj.paths import shared_data
from daj.policies.file import pool_candidates, read_lcb_eval_all, read_pool

SUBMISSIONS = shared_data("lcb", "submissions")
REAL_POOLS = {
    "submissions_v5_O1-Mini-2024-09-12_N1_eval_all.json.gz": 602,
    "submissions_v5_O1-Preview-2024-09-12_N1_eval_all.json.gz": 489,
    "submissions_v5_Kimi-k1.6-IOI-high_N1_eval_all.json.gz": 757,
}


def _eval_all(path: Path, records: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(records, fh)
    return path


def _rec(qid: str, codes: list[str], graded: list[bool] | None = None) -> dict:
    rec = {"question_id": qid, "question_title": qid, "code_list": codes,
           "output_list": [f"```python\n{c}\n```" for c in codes]}
    if graded is not None:
        rec["graded_list"] = graded
    return rec


def test_read_lcb_eval_all_rows(tmp_path):
    path = _eval_all(tmp_path / "m_eval_all.json.gz",
                     [_rec("abc1_a", ["print(1)", "print(2)"], [True, False]), _rec("2777", ["x=1"])])
    rows = read_lcb_eval_all(path)
    assert [(r["problem_id"], r["index"], r["code"], r["imported_passed"]) for r in rows] == [
        ("lcb/abc1_a", 0, "print(1)", True), ("lcb/abc1_a", 1, "print(2)", False),
        ("lcb/2777", 0, "x=1", None)]
    assert rows[0]["raw_output"] == "```python\nprint(1)\n```"


@pytest.mark.parametrize("record, field", [
    ({"code_list": ["a"]}, "question_id"),
    ({"question_id": "q"}, "code_list"),
    ({"question_id": "q", "code_list": ["a"], "graded_list": [True, False]}, "graded_list"),
    ({"question_id": "q", "code_list": "a"}, "code_list"),
])
def test_read_lcb_eval_all_bad_input(tmp_path, record, field):
    path = _eval_all(tmp_path / "bad_eval_all.json.gz", [record])
    with pytest.raises(DajError) as e:
        read_lcb_eval_all(path)
    assert e.value.field == field and "bad_eval_all" in str(e.value)


def test_read_lcb_eval_all_not_a_list(tmp_path):
    path = tmp_path / "x_eval_all.json"
    path.write_text('{"a": 1}')
    with pytest.raises(DajError, match="expected a JSON list"):
        read_lcb_eval_all(path)


def test_combined_pools_follow_file_order(tmp_path):
    a = _eval_all(tmp_path / "a_eval_all.json.gz", [_rec("p1", ["a1"], [True]), _rec("p2", ["a2"], [False])])
    b = tmp_path / "b.jsonl"
    b.write_text(json.dumps({"problem_id": "lcb/p1", "policy": "x", "index": 5, "code": "b1"}) + "\n")
    pool = read_pool([a, b])
    assert [c["code"] for c in pool["lcb/p1"]] == ["a1", "b1"]
    assert [c["index"] for c in pool["lcb/p1"]] == [0, 1]
    found, missing = pool_candidates(pool, ["lcb/p1", "lcb/p2", "lcb/p3"], "mix")
    assert missing == ["lcb/p3"]
    assert found["lcb/p1"][1] == {"problem_id": "lcb/p1", "policy": "mix", "index": 1, "code": "b1",
                                  "source": "b.jsonl"}
    assert found["lcb/p2"][0]["imported_passed"] is False


def test_bad_path_type():
    with pytest.raises(DajError, match="path"):
        read_pool([])


@pytest.mark.skipif(not SUBMISSIONS.is_dir(), reason="real LCB pools are in shared/ (DAJ_SHARED)")
def test_real_lcb_pools():
    for name, passing in REAL_POOLS.items():
        rows = read_lcb_eval_all(SUBMISSIONS / name)
        assert len(rows) == 880 and len({r["problem_id"] for r in rows}) == 880
        assert sum(r["imported_passed"] for r in rows) == passing
    pool = read_pool([SUBMISSIONS / n for n in REAL_POOLS])
    assert len(pool) == 880 and all(len(c) == 3 for c in pool.values())
    assert sum(c[1]["imported_passed"] for c in pool.values()) == 489

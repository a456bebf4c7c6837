"""Best-of-N on the three real LCB pools (O1-Mini, O1-Preview, Kimi-k1.6) with their official verdicts.

The expected values are computed here, independently, from the raw `*_eval_all.json.gz` records
(question_id, contest_date, platform, difficulty, graded_list), without our parsers.
"""

from __future__ import annotations

import gzip
import json

import pytest

from daj.config import SplitConfig
from daj.data.lcb import load_lcb_snapshot
from daj.data.pools import load_pool
from daj.data.splits import assign_lcb
from daj.eval.bon import evaluate_policy
from daj.io import write_jsonl
from daj.paths import shared_data
from daj.policies.file import pool_candidates, read_pool

DATA = shared_data("lcb")
POOLS = [DATA / "submissions" / f"submissions_v5_{name}_N1_eval_all.json.gz"
         for name in ("O1-Mini-2024-09-12", "O1-Preview-2024-09-12", "Kimi-k1.6-IOI-high")]
pytestmark = pytest.mark.skipif(not all(p.exists() for p in POOLS), reason="real LCB pools not staged here")


def independent_expectations() -> dict:
    """Per difficulty: mean pass rate (random) and any-pass rate (oracle) over the upper window."""
    verdicts: dict[str, list[bool]] = {}
    meta: dict[str, tuple[str, str, str]] = {}
    for path in POOLS:
        with gzip.open(path, "rt") as fh:
            for rec in json.load(fh):
                verdicts.setdefault(rec["question_id"], []).extend(rec["graded_list"])
                meta[rec["question_id"]] = (rec["contest_date"][:10], rec["platform"], rec["difficulty"])
    upper = [q for q, (date, platform, _) in meta.items()
             if "2024-08-01" <= date < "2025-02-01" and platform != "codeforces"]
    out = {}
    for diff in ("overall", "easy", "medium", "hard"):
        qs = [q for q in upper if diff == "overall" or meta[q][2] == diff]
        out[diff] = {"random": 100 * sum(sum(verdicts[q]) / len(verdicts[q]) for q in qs) / len(qs),
                     "oracle": 100 * sum(any(verdicts[q]) for q in qs) / len(qs),
                     "first": 100 * sum(verdicts[q][0] for q in qs) / len(qs),
                     "n": len(qs)}
    return out


@pytest.fixture(scope="module")
def upper_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lcb")
    problems = load_lcb_snapshot(DATA / "code_generation_lite")
    split = SplitConfig(lcb_upper_start="2024-08-01", lcb_test_start="2025-02-01", lcb_test_end="2025-05-01")
    assignment, _ = assign_lcb(problems, split)
    upper = [p for p in problems if assignment.get(p["id"]) == "upper" and p["platform"] != "codeforces"]
    found, missing = pool_candidates(read_pool(POOLS), [p["id"] for p in upper], "lcb3")
    assert not missing
    rows = [c for pid in found for c in found[pid]]
    write_jsonl(tmp / "candidates.jsonl", rows)
    return tmp, upper, rows


@pytest.mark.parametrize("public", ["all", "imported"])
def test_bon_reproduces_official_verdicts(upper_setup, public):
    tmp, upper, rows = upper_setup
    # no public-test verdicts here: `all` marks every candidate as passing the public tests (then
    # public_tests must equal random), `imported` copies the full verdict (then it must equal oracle)
    write_jsonl(tmp / "verdicts.jsonl", [
        {"problem_id": c["problem_id"], "policy": "lcb3", "index": c["index"], "passed": c["imported_passed"],
         "public_passed": True if public == "all" else c["imported_passed"], "status": "imported",
         "tests_passed": None, "tests_total": None} for c in rows])
    pools = load_pool(tmp / "candidates.jsonl", tmp / "verdicts.jsonl", "lcb3", [p["id"] for p in upper])
    assert {len(c) for c in pools.values()} == {3}
    result = evaluate_policy("lcb3", upper, pools, runner=None, rounds=8, seed=0, progress=False)
    expected = independent_expectations()
    for diff, exp in expected.items():
        for method in ("random", "oracle", "first"):
            assert result.summary[method][diff] == pytest.approx(exp[method], abs=0.01), (method, diff)
        twin = "random" if public == "all" else "oracle"
        assert result.summary["public_tests"][diff] == pytest.approx(exp[twin], abs=0.01)
    assert result.summary["random"]["n"] == expected["overall"]["n"] == len(upper)
    assert result.summary["public_tests"]["overall"] >= result.summary["random"]["overall"] - 1e-9

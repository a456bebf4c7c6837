"""Agreement of sandbox verdicts with LiveCodeBench's official ones on the real pools in shared/.

The pools (O1-Mini, O1-Preview, Kimi-k1.6; one sample per problem, `*_eval_all.json.gz`) carry the
official verdict on the full hidden tests. Used by experiments/sandbox_agreement/lcb_agreement.py, the
side-by-side benchmark and tests/sandbox/test_sandbox_lcb.py.
"""

from __future__ import annotations

import collections
from pathlib import Path

from daj.data.lcb import load_lcb_snapshot
from daj.paths import shared_data
from daj.policies.file import read_lcb_eval_all

DATA = shared_data("lcb")
POOLS = ("O1-Mini-2024-09-12", "O1-Preview-2024-09-12", "Kimi-k1.6-IOI-high")
SNAPSHOTS = {"public": DATA / "code_generation_lite", "full": DATA / "code_generation_lite_private184"}


def load(mode: str, limit: int | None, data: Path = DATA) -> list[tuple[str, dict, dict]]:
    """(pool, problem, candidate) triples; the candidate has `code` and `imported_passed`."""
    snapshot = data / SNAPSHOTS[mode].name
    problems = {p["id"]: p for p in load_lcb_snapshot(snapshot)}
    if limit:
        problems = dict(list(problems.items())[:limit])
    triples = []
    for pool in POOLS:
        for cand in read_lcb_eval_all(data / "submissions" / f"submissions_v5_{pool}_N1_eval_all.json.gz"):
            if cand["problem_id"] in problems:
                triples.append((pool, problems[cand["problem_id"]], cand))
    return triples


def agreement(triples, verdicts, key: str) -> dict:
    """Counts per pool and the list of disagreements, using verdict[key] (passed or public_passed)."""
    report: dict = {"pools": {}, "disagreements": []}
    for (pool, problem, cand), v in zip(triples, verdicts, strict=True):
        official = bool(cand["imported_passed"])
        ours = bool(v[key])
        c = report["pools"].setdefault(pool, collections.Counter())
        c["official_pass"] += official
        c["official_fail"] += not official
        c["pass_kept"] += official and ours
        c["fail_rejected"] += (not official) and (not ours)
        if official != ours and (official or key == "passed"):
            report["disagreements"].append({
                "pool": pool, "problem_id": problem["id"], "official": official, "ours": ours,
                "status": v["status"], "tests": f"{v['tests_passed']}/{v['tests_total']}",
                "error": v["error"][:300]})
    total = collections.Counter()
    for c in report["pools"].values():
        total.update(c)
    report["pools"] = {k: dict(v) for k, v in report["pools"].items()}
    report["total"] = dict(total)
    report["pass_kept_pct"] = round(100 * total["pass_kept"] / max(1, total["official_pass"]), 2)
    report["fail_rejected_pct"] = round(100 * total["fail_rejected"] / max(1, total["official_fail"]), 2)
    return report

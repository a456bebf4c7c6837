"""Agreement of our sandbox with LiveCodeBench's official verdicts on real candidate pools.

    python benchmarks/lcb_agreement.py public    # 880 problems x 3 pools, public tests only
    python benchmarks/lcb_agreement.py full      # 184 problems with hidden tests x 3 pools
Options: --limit N (first N problems), --workers K, --out report.json, --cache DIR.
Officially passing candidates should pass; officially failing ones should be rejected (on public tests
only some can be). Every disagreement is listed with our status and error text.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daj.data.lcb import load_lcb_snapshot  # noqa: E402
from daj.engines.file import read_lcb_eval_all  # noqa: E402
from daj.io import write_json  # noqa: E402
from sandbox.config import SandboxConfig  # noqa: E402
from sandbox.pool import SandboxPool  # noqa: E402

DATA = Path("/work/shared/data/lcb")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=sorted(SNAPSHOTS))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--cache", default=None, help="verdict cache dir (default: none, judge afresh)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    triples = load(args.mode, args.limit)
    config = SandboxConfig(backend="local", workers=args.workers, cache_dir=args.cache)
    start = time.perf_counter()
    with SandboxPool(config) as runner:
        verdicts = runner.check([(p, c["code"]) for _, p, c in triples], desc=f"lcb {args.mode}")
    seconds = time.perf_counter() - start
    key = "passed" if args.mode == "full" else "public_passed"
    report = agreement(triples, verdicts, key)
    report.update(mode=args.mode, candidates=len(triples), seconds=round(seconds, 1), verdict=key,
                  status=dict(collections.Counter(v["status"] for v in verdicts)))
    if args.mode == "full":  # also how many official fails the public tests alone reject
        report["fail_rejected_on_public"] = sum(
            1 for (_, _, c), v in zip(triples, verdicts, strict=True)
            if not c["imported_passed"] and not v["public_passed"])
    print(json.dumps(report, indent=2))
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()

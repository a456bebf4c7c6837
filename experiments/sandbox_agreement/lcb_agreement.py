"""Agreement of our sandbox with LiveCodeBench's official verdicts on real candidate pools.

    python -m experiments.sandbox_agreement.lcb_agreement public    # 880 problems x 3 pools, public tests only
    python -m experiments.sandbox_agreement.lcb_agreement full      # 184 problems with hidden tests x 3 pools
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from daj.config import ExecuteConfig  # noqa: E402
from daj.eval.agreement import DATA, SNAPSHOTS, agreement, load  # noqa: E402, F401
from daj.io import write_json  # noqa: E402
from sandbox.pool import SandboxPool  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=sorted(SNAPSHOTS))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--cache", default=None, help="verdict cache dir (default: none, judge afresh)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    triples = load(args.mode, args.limit)
    config = ExecuteConfig(backend="local", workers=args.workers)
    start = time.perf_counter()
    with SandboxPool(config, cache_dir=args.cache) as runner:
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

"""`execute` throughput, local (bubblewrap) and docker side by side, on the LiveCodeBench pools.

    python benchmarks/execute_backends.py [--limit N] [--workers K] [--image TAG] [--out report.json]

The three real pools of ../shared/data/lcb/submissions (880 problems x 3 = 2,640 candidates), public
tests, judged afresh (no verdict cache) by each backend in turn with the same settings as the
`execute` stage's defaults. Reports wall seconds, candidates/s and tests/s per backend, the sandbox
start-up time, the verdict statuses, and how many candidates got a different verdict.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daj.config import ExecuteConfig  # noqa: E402
from daj.eval.agreement import load  # noqa: E402
from daj.io import write_json  # noqa: E402
from daj.paths import shared_data  # noqa: E402
from sandbox.pool import SandboxPool, n_workers  # noqa: E402

DATA = shared_data("lcb")
VERDICT_KEYS = ("passed", "public_passed", "status", "tests_passed")


def judge(backend: str, pairs: list, workers: int, image: str) -> tuple[dict, list[dict]]:
    """Judge `pairs` on one backend; its figures and the verdicts."""
    config = ExecuteConfig(backend=backend, workers=workers, docker_image=image)
    with SandboxPool(config) as runner:
        start = time.perf_counter()
        runner.check(pairs[:1], desc=f"{backend} warm-up")  # one sandbox up; not timed below
        startup = time.perf_counter() - start
        runner.check(pairs[1:1 + n_workers(config)], desc=f"{backend} warm-up")  # every sandbox up
        startup_all = time.perf_counter() - start
        start = time.perf_counter()
        verdicts = runner.check(pairs, desc=f"execute ({backend})")
        seconds = time.perf_counter() - start
    tests = sum(v["tests_total"] if v["passed"] else v["tests_passed"] + 1 for v in verdicts)
    figures = {"workers": n_workers(config), "seconds": round(seconds, 1),
               "candidates_per_s": round(len(pairs) / seconds, 2), "tests_run_per_s": round(tests / seconds, 1),
               "sandbox_start_s": round(startup, 2), "all_sandboxes_start_s": round(startup_all, 2),
               "status": dict(collections.Counter(v["status"] for v in verdicts))}
    return figures, verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="first N problems (default: all 880)")
    ap.add_argument("--workers", type=int, default=0, help="sandboxes per backend (0: cores)")
    ap.add_argument("--image", default="daj-sandbox:latest")
    ap.add_argument("--backends", default="local,docker")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    pairs = [(p, c["code"]) for _, p, c in load("public", args.limit, data=DATA)]
    report: dict = {"candidates": len(pairs), "tests": "public", "cpu_count": os.cpu_count(),
                    "image": args.image, "backends": {}}
    verdicts = {}
    for backend in args.backends.split(","):
        report["backends"][backend], verdicts[backend] = judge(backend, pairs, args.workers, args.image)
        print(backend, json.dumps(report["backends"][backend]), flush=True)
    if len(verdicts) == 2:
        a, b = verdicts.values()
        differ = [(pairs[i][0]["id"], {k: a[i][k] for k in VERDICT_KEYS}, {k: b[i][k] for k in VERDICT_KEYS})
                  for i in range(len(pairs)) if any(a[i][k] != b[i][k] for k in VERDICT_KEYS)]
        report["verdicts_differ"] = len(differ)
        report["differences"] = differ[:50]
    print(json.dumps(report, indent=2))
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()

"""BigCodeBench canonical solutions in our sandbox: which pass here, which lack a library.

    python -m experiments.sandbox_agreement.bcb_canonical [--backend local|docker] [--image TAG] [--all] [--workers K]
                                       [--out report.json]

Default: the 148 Hard tasks (code = code_prompt + canonical_solution, tests from the `test` field), in
the local sandbox. Locally, a canonical fails as `missing_dependency` when a BCB library is not in
the project's environment; `--backend docker` runs them in the BigCodeBench image (`make image`,
daj-sandbox:latest), which has the libraries. Every failure is listed with its status and error.
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
from daj.data.bcb import load_bcb_snapshot  # noqa: E402
from daj.io import write_json  # noqa: E402
from daj.paths import shared_data  # noqa: E402
from sandbox.pool import SandboxPool  # noqa: E402

DATA = shared_data("bigcodebench")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--all", action="store_true", help="all 1,140 tasks instead of the Hard 148")
    ap.add_argument("--backend", choices=("local", "docker"), default="local")
    ap.add_argument("--image", default="daj-sandbox:latest", help="docker image (--backend docker)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    problems = [p for p in load_bcb_snapshot(args.data) if args.all or p["hard"]]
    config = ExecuteConfig(backend=args.backend, docker_image=args.image, workers=args.workers)
    start = time.perf_counter()
    with SandboxPool(config) as runner:
        verdicts = runner.check([(p, p["reference"]) for p in problems], desc="bcb canonical")
    missing = collections.Counter()
    other = []
    for p, v in zip(problems, verdicts, strict=True):
        if v["status"] == "missing_dependency":
            missing[v["error"].split("No module named ")[-1].split(";")[0].strip("' ")[:60]] += 1
        elif not v["passed"]:
            other.append({"id": p["id"], "status": v["status"],
                          "tests": f"{v['tests_passed']}/{v['tests_total']}", "error": v["error"][:400]})
    report = {"backend": args.backend, "image": args.image if args.backend == "docker" else None,
              "tasks": len(problems), "passed": sum(v["passed"] for v in verdicts), "seconds": round(time.perf_counter() - start, 1),
              "status": dict(collections.Counter(v["status"] for v in verdicts)),
              "missing_modules": dict(missing.most_common()), "other_failures": other}
    print(json.dumps(report, indent=2))
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()

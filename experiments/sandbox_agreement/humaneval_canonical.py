"""HumanEval's canonical solutions in our sandbox: every one must pass (the official check).

    python -m experiments.sandbox_agreement.humaneval_canonical [--backend local|docker] [--out report.json]

`passed` is the official check; `public_passed` also runs the docstring examples (HumanEval/47's
example disagrees with its canonical solution, so 163 of 164 is the expected figure there).
"""

from __future__ import annotations

import argparse
import collections
import json

from daj.config import ExecuteConfig
from daj.data.humaneval import load_humaneval_package
from daj.io import write_json
from sandbox.pool import SandboxPool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=("local", "docker"), default="local")
    ap.add_argument("--image", default="daj-sandbox:latest", help="docker image (--backend docker)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    problems = load_humaneval_package()
    config = ExecuteConfig(backend=args.backend, docker_image=args.image, workers=args.workers)
    with SandboxPool(config) as pool:
        verdicts = pool.check([(p, p["reference"]) for p in problems], desc="humaneval canonical")
    report = {"backend": args.backend, "problems": len(problems), "passed": sum(v["passed"] for v in verdicts),
              "public_passed": sum(v["public_passed"] for v in verdicts),
              "status": dict(collections.Counter(v["status"] for v in verdicts)),
              "not_passed": [p["id"] for p, v in zip(problems, verdicts, strict=True) if not v["passed"]],
              "public_not_passed": [p["id"] for p, v in zip(problems, verdicts, strict=True)
                                    if not v["public_passed"]]}
    print(json.dumps(report, indent=2))
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()

"""Sandbox throughput on real LCB candidates vs a naive baseline (a fresh `python` per test), same run.

    python benchmarks/sandbox_throughput.py [--candidates 300] [--workers 0] [--seed 0] [--out f.json]

Candidates: a seeded sample of the three real pools (shared/data/lcb/submissions beside the repository), judged on the
public tests of code_generation_lite. Both sides use the same worker count, stop at the first failing
test and use the LCB comparison; the sandbox runs with its cache off. tests/s counts tests actually run.
Reported twice: over all candidates (wall clock), and over the candidates that timed out on neither
side (tests per worker-second), where the time limit itself does not dominate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daj.config import ExecuteConfig  # noqa: E402
from daj.eval.agreement import load  # noqa: E402
from daj.io import write_json  # noqa: E402
from sandbox.inside.compare import functional_matches, stdout_matches  # noqa: E402
from sandbox.inside.runner import PRELUDE  # noqa: E402
from sandbox.pool import SandboxPool  # noqa: E402

TIMEOUT_S = 6.0
# the baseline's functional driver: prelude + candidate, then one call; prints the JSON result
CALL = PRELUDE + """
import json, sys
sys.setrecursionlimit(50000)
exec(compile(open(sys.argv[1]).read(), "<candidate>", "exec"), globals())
args = [json.loads(line) for line in sys.stdin.read().split("\\n")]
result = getattr(Solution(), sys.argv[2])(*args)
print(json.dumps(list(result) if isinstance(result, tuple) else result))
"""


def naive_candidate(problem: dict, code: str, workdir: Path) -> tuple[bool, int, bool, float]:
    """(passed, tests run, timed out, seconds): a fresh interpreter per test, as a plain subprocess
    runner would do."""
    start = time.perf_counter()
    passed, n, timed_out = _naive(problem, code, workdir)
    return passed, n, timed_out, time.perf_counter() - start


def _naive(problem: dict, code: str, workdir: Path) -> tuple[bool, int, bool]:
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "candidate.py"
    src.write_text(PRELUDE + code if problem["tests"]["type"] == "stdin" else code)
    tests = problem["tests"]["public"] + problem["tests"]["private"]
    for n, test in enumerate(tests, 1):
        if problem["tests"]["type"] == "stdin":
            argv = [sys.executable, str(src)]
        else:
            argv = [sys.executable, "-c", CALL, str(src), problem["tests"]["func_name"]]
        try:
            proc = subprocess.run(argv, input=test["input"], capture_output=True, text=True,
                                  timeout=TIMEOUT_S, cwd=workdir)
        except subprocess.TimeoutExpired:
            return False, n, True
        if proc.returncode != 0:
            return False, n, False
        if problem["tests"]["type"] == "stdin":
            ok = stdout_matches(proc.stdout, test["output"])
        else:
            try:
                ok = functional_matches(json.loads(proc.stdout), json.loads(test["output"]))
            except ValueError:
                ok = False
        if not ok:
            return False, n, False
    return True, len(tests), False


def trivial_pairs(n: int) -> list[tuple[dict, str]]:
    """n a+b candidates with 10 stdin tests each: the runner's own per-test cost."""
    tests = [{"input": f"{i} {i * 7}\n", "output": f"{i * 8}\n"} for i in range(10)]
    problem = {"id": "trivial/a+b", "tests": {"type": "stdin", "public": tests, "private": []}}
    return [(problem, f"a, b = map(int, input().split())\nprint(a + b)  # {i}") for i in range(n)]


def compare_runners(pairs: list[tuple[dict, str]], workers: int, desc: str) -> dict:
    """Judge `pairs` with the sandbox, then with the naive runner; the figures of both."""
    config = ExecuteConfig(backend="local", workers=workers, timeout_s=TIMEOUT_S)
    with SandboxPool(config, progress=True) as runner:
        runner.check(pairs[:workers], desc="warm-up")  # start the sandboxes outside the timing
        start = time.perf_counter()
        verdicts = runner.check(pairs, desc=f"sandbox {desc}")
        seconds = list(runner.seconds)  # per candidate (verdicts hold results only)
    sandbox_s = time.perf_counter() - start
    sandbox_tests = sum(len(v["outcomes"]) for v in verdicts)

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"daj-naive-{os.getpid()}"
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        naive = list(ex.map(lambda ipc: naive_candidate(ipc[1][0], ipc[1][1], tmp / str(ipc[0])),
                            enumerate(pairs)))
    naive_s = time.perf_counter() - start
    subprocess.run(["rm", "-rf", str(tmp)], check=False)
    naive_tests = sum(n for _, n, _, _ in naive)
    # The time limit costs a timed-out candidate the same seconds in any runner, and real programs'
    # own compute is the same too; the runner's overhead shows on the candidates that did not time
    # out on either side: tests per worker-second there.
    keep = [i for i, (v, nv) in enumerate(zip(verdicts, naive, strict=True))
            if v["status"] != "timeout" and not nv[2]]
    sb_t, sb_s = sum(len(verdicts[i]["outcomes"]) for i in keep), sum(seconds[i] or 0.0 for i in keep)
    nv_t, nv_s = sum(naive[i][1] for i in keep), sum(naive[i][3] for i in keep)

    report = {
        "candidates": len(pairs),
        "sandbox": {"seconds": round(sandbox_s, 2), "tests": sandbox_tests,
                    "tests_per_s": round(sandbox_tests / sandbox_s, 1),
                    "candidates_per_s": round(len(pairs) / sandbox_s, 2),
                    "passed": sum(v["passed"] for v in verdicts)},
        "naive_fresh_python_per_test": {"seconds": round(naive_s, 2), "tests": naive_tests,
                                         "tests_per_s": round(naive_tests / naive_s, 1),
                                         "candidates_per_s": round(len(pairs) / naive_s, 2),
                                         "passed": sum(nv[0] for nv in naive)},
        "verdict_agreement": sum(v["passed"] == nv[0] for v, nv in zip(verdicts, naive, strict=True)),
        "without_timeouts": {"candidates": len(keep), "tests": sb_t,
                             "sandbox_tests_per_worker_s": round(sb_t / max(sb_s, 1e-9), 1),
                             "naive_tests_per_worker_s": round(nv_t / max(nv_s, 1e-9), 1)},
        "timeouts": {"sandbox": sum(v["status"] == "timeout" for v in verdicts),
                     "naive": sum(nv[2] for nv in naive)},
    }
    report["speedup_tests_per_s"] = round(report["sandbox"]["tests_per_s"]
                                          / report["naive_fresh_python_per_test"]["tests_per_s"], 2)
    w = report["without_timeouts"]
    w["speedup"] = round(w["sandbox_tests_per_worker_s"] / max(w["naive_tests_per_worker_s"], 1e-9), 2)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidates", type=int, default=300)
    ap.add_argument("--trivial", type=int, default=50, help="a+b candidates (10 tests each); 0: skip")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    triples = [t for t in load("public", None) if t[1]["tests"]["public"]]
    random.Random(args.seed).shuffle(triples)
    pairs = [(p, c["code"]) for _, p, c in triples[:args.candidates]]
    workers = args.workers or os.cpu_count() or 1
    report = {"workers": workers, "cpu_count": os.cpu_count(),
              "load_average_at_start": os.getloadavg()[0],
              "lcb_pools": compare_runners(pairs, workers, "lcb")}
    if args.trivial:
        report["trivial_a_plus_b"] = compare_runners(trivial_pairs(args.trivial), workers, "a+b")
    report["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()

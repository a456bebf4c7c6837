"""daj's sandbox and LiveCodeBench's own harness, side by side in one run, on the three real pools.

    python benchmarks/lcb_side_by_side.py --lcb-path DIR [--workers 2] [--limit N] [--out report.json]

DIR holds LiveCodeBench's `lcb_runner` package (a checkout of github.com/LiveCodeBench/LiveCodeBench;
also read from $LCB_PATH); its code is imported from there, never copied here. Both harnesses judge
the same candidates (2,640: 880 problems x 3 pools, public tests of code_generation_lite) with the
same worker count; LCB's `codegen_metrics` runs with its own settings (timeout 6, one process per
candidate). Reported per harness: wall seconds, candidates/s, tests/s, agreement with the official
verdicts (official passes kept, official fails rejected on public tests); for daj also where the
seconds go (per status, the timeouts, the median candidate) and the candidates' floor.
With --old-harness REV, the sandbox of that git revision is timed too (same run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daj.config import ExecuteConfig  # noqa: E402
from daj.eval.agreement import agreement, load  # noqa: E402
from daj.io import write_json  # noqa: E402
from sandbox.pool import SandboxPool  # noqa: E402


def lcb_sample(problem: dict) -> dict:
    tests = problem["tests"]["public"] + problem["tests"]["private"]
    io = {"inputs": [t["input"] for t in tests], "outputs": [t["output"] for t in tests]}
    if problem["tests"]["type"] == "functional":
        io["fn_name"] = problem["tests"]["func_name"]
    return {"input_output": json.dumps(io)}


def run_lcb(triples, workers: int, lcb_path: str) -> dict:
    """LCB's codegen_metrics on the same candidates; per-candidate all-tests-passed verdicts."""
    sys.path.insert(0, lcb_path)
    from lcb_runner.evaluation.compute_code_generation_metrics import codegen_metrics

    samples = [lcb_sample(p) for _, p, _ in triples]
    generations = [[c["code"]] for _, _, c in triples]
    start = time.perf_counter()
    _, results, _ = codegen_metrics(samples, generations, k_list=[1], num_process_evaluate=workers, timeout=6)
    seconds = time.perf_counter() - start
    verdicts = []
    tests_run = 0
    for i in range(len(triples)):
        res = results[i][0]
        tests_run += sum(1 for r in res if r is not None)
        ok = bool(res) and all(r is True or r == 1 for r in res)
        verdicts.append({"passed": ok, "public_passed": ok, "status": "pass" if ok else "fail",
                         "tests_passed": 0, "tests_total": 0, "error": ""})
    return {"seconds": seconds, "verdicts": verdicts, "tests": tests_run}


def run_daj(triples, workers: int, tree: Path | None = None) -> dict:
    """daj's sandbox on the candidates: this checkout's, or (`tree`) that of an older revision, run in
    a subprocess of its own with the same settings."""
    pairs = [(p, c["code"]) for _, p, c in triples]
    if tree is not None:
        return run_old(tree, triples, workers)
    config = ExecuteConfig(backend="local", workers=workers)
    with SandboxPool(config, progress=True) as runner:
        runner.check(pairs[:workers], desc="warm-up")  # start the sandboxes outside the timing
        start = time.perf_counter()
        verdicts = runner.check(pairs, desc="daj")
        seconds = time.perf_counter() - start
        candidate_seconds = list(runner.seconds)
    return {"seconds": seconds, "verdicts": verdicts, "candidate_seconds": candidate_seconds,
            "tests": sum(len(v["outcomes"]) for v in verdicts)}


OLD_RUN = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from sandbox.config import SandboxConfig
from sandbox.pool import SandboxPool
pairs, workers = json.load(open(sys.argv[2])), int(sys.argv[3])
with SandboxPool(SandboxConfig(backend="local", workers=workers, cache_dir=None), progress=True) as runner:
    runner.check(pairs[:workers], desc="warm-up")
    start = time.perf_counter()
    verdicts = runner.check(pairs, desc="daj (old harness)")
    seconds = time.perf_counter() - start
json.dump({"seconds": seconds, "verdicts": verdicts}, open(sys.argv[4], "w"))
"""


def run_old(tree: Path, triples, workers: int) -> dict:
    """The sandbox of an exported older revision (its own SandboxConfig API), in a subprocess."""
    with tempfile.TemporaryDirectory() as tmp:
        pairs_file, out = Path(tmp) / "pairs.json", Path(tmp) / "out.json"
        pairs_file.write_text(json.dumps([(p, c["code"]) for _, p, c in triples]))
        subprocess.run([sys.executable, "-c", OLD_RUN, str(tree), str(pairs_file), str(workers), str(out)],
                       check=True, cwd=tree)
        run = json.loads(out.read_text())
    run["candidate_seconds"] = [v.get("seconds") for v in run["verdicts"]]
    run["tests"] = sum(len(v["outcomes"]) for v in run["verdicts"])
    return run


def summary(run: dict, triples, workers: int) -> dict:
    verdicts = run["verdicts"]
    report = agreement(triples, verdicts, "public_passed")
    out = {"seconds": round(run["seconds"], 1), "candidates_per_s": round(len(triples) / run["seconds"], 1),
           "tests": run["tests"], "tests_per_s": round(run["tests"] / run["seconds"], 1),
           "official_pass": report["total"]["official_pass"], "pass_kept": report["total"]["pass_kept"],
           "official_fail": report["total"]["official_fail"],
           "fail_rejected": report["total"]["fail_rejected"]}
    seconds = run.get("candidate_seconds")
    if seconds:
        seconds = [s or 0.0 for s in seconds]
        by_status: dict[str, float] = Counter()
        for v, s in zip(verdicts, seconds, strict=True):
            by_status[v["status"]] += s
        passing = sorted(s for v, s in zip(verdicts, seconds, strict=True) if v["status"] == "pass")
        busy = sum(seconds)
        out["where_the_seconds_go"] = {
            "sum_of_candidate_seconds": round(busy, 1),
            "over_workers": round(busy / workers, 1),
            "per_status_seconds": {k: round(s, 1) for k, s in sorted(by_status.items())},
            "timeouts": sum(v["status"] == "timeout" for v in verdicts),
            "median_passing_candidate_ms": round(1000 * statistics.median(passing), 1) if passing else None,
            "heaviest_50_passing_s": round(sum(passing[-50:]), 1),
            "idle_or_overhead_s": round(run["seconds"] - busy / workers, 1),
        }
        out["status"] = dict(Counter(v["status"] for v in verdicts))
    return out


def old_tree(rev: str) -> Path:
    """The sandbox/ and daj/ directories of git revision `rev`, exported to a temp dir."""
    dest = Path(tempfile.mkdtemp(prefix="daj-old-harness-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "sandbox", "daj"], check=True,
                             capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lcb-path", default=os.environ.get("LCB_PATH"),
                    help="directory holding LiveCodeBench's lcb_runner package (or $LCB_PATH)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N problems only")
    ap.add_argument("--old-harness", default=None, help="git revision whose sandbox is timed too")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    triples = load("public", args.limit)
    report: dict = {"candidates": len(triples), "workers": args.workers, "cpu_count": os.cpu_count(),
                    "load_average_at_start": os.getloadavg()[0]}
    report["daj"] = summary(run_daj(triples, args.workers), triples, args.workers)
    if args.old_harness:
        report["daj_old_harness"] = summary(run_daj(triples, args.workers, old_tree(args.old_harness)),
                                            triples, args.workers)
    if args.lcb_path:
        report["lcb_harness"] = summary(run_lcb(triples, args.workers, args.lcb_path), triples, args.workers)
        report["speedup_vs_lcb"] = round(report["lcb_harness"]["seconds"] / report["daj"]["seconds"], 2)
    else:
        report["lcb_harness"] = "not run (no --lcb-path / $LCB_PATH)"
    report["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()

"""The three judge stages (pairs, bon, pairwise) of the embedded default, old code against new, in one run.

    PYTHONPATH=. python benchmarks/judge_stages.py [--old 0410a44] [--pin-prompt new|old] [--greedy-check]

Two copies of the project side by side in a temporary directory: `old` (a git worktree at --old, by
default the last commit before issue 22's decoding loop) and `new` (this working tree's tracked and
untracked files). With --pin-prompt both copies use the same judge prompt module (`new`: this tree's
daj/judge/prompt.py in both; `old`: the old commit's), so the prompts and their lengths are equal.

The data stages (fetch, tiny, sample, execute, split) run once, in the old copy, and their outputs are
copied to the new one. Then, in fresh processes with empty judge caches, alternating old and new:
pairs; train once (old copy, on the new copy's pairs) with the adapter copied to the new copy; bon;
pairwise. Wall
time and CPU time (user + system of the stage process) per stage, the metrics of both, and whether
they are equal. With --greedy-check, pairs runs once more in both copies with judge.temperature 0
(greedy reasoning, likeliest forced selection): no sampling left, so its outputs must be equal byte
for byte (the sampled runs differ because the new engine draws each row from its own stream).

Writes benchmarks/results/judge_stages.json (--out). Needs about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD = "0410a44"  # the last commit before issue 22's decoding loop (f069696)
DATA_STAGES = (["fetch"], ["tiny"], ["sample", "--policy", "mutants"], ["execute"], ["split"])
COPIED = ("data/problems.jsonl", "data/candidates", "data/verdicts", "data/splits", "models/tiny")
OUTPUTS = {"pairs": ["metrics/pairs.json", "data/pairs"], "bon": ["metrics/bon.json", "metrics/bon_problems.csv"],
           "pairwise": ["metrics/pairwise.json"]}


def sh(args: list[str], cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def copy_tree(dest: Path) -> None:
    """This working tree's tracked and untracked (not ignored) files."""
    for rel in sh(["git", "ls-files", "-co", "--exclude-standard", "-z"], REPO).split("\0"):
        if rel and (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)


def run_stage(tree: Path, args: list[str]) -> dict:
    """One stage in a fresh process: wall and CPU seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "TQDM_DISABLE": "1"}
    env.pop("DAJ_PARAMS", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"stages.{args[0]}", *args[1:]], cwd=tree, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{tree.name}: stage {args[0]} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def read_outputs(tree: Path, stage: str) -> dict[str, str]:
    """The stage's output files (a directory's files by name) as text."""
    out = {}
    for rel in OUTPUTS[stage]:
        path = tree / rel
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                out[str(f.relative_to(tree))] = f.read_text()
    return out


def fresh_cache(tree: Path) -> None:
    shutil.rmtree(tree / ".cache" / "judge", ignore_errors=True)


def set_param(tree: Path, section: str | None, key: str, value: object) -> None:
    """Rewrite one line of the copy's params.yaml: `key` at the top level (section None) or in `section`."""
    params = tree / "params.yaml"
    lines = params.read_text().splitlines(keepends=True)
    current = None
    for i, line in enumerate(lines):
        if line and not line[0].isspace():
            current = line.split(":")[0]
        if section is None and line.startswith(f"{key}:") or section == current and line.startswith(f"  {key}:"):
            lines[i] = f"{'  ' if section else ''}{key}: {value}\n"
    params.write_text("".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default=OLD, help="the commit to compare with")
    ap.add_argument("--pin-prompt", choices=("new", "old"), default="new",
                    help="whose daj/judge/prompt.py both copies use")
    ap.add_argument("--greedy-check", action="store_true", help="also compare pairs at judge.temperature 0")
    ap.add_argument("--cpu-threads", type=int, default=None, help="cpu_threads of both copies (default: params)")
    ap.add_argument("--work", default=None, help="working directory (default: a temporary one, removed)")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/judge_stages.json"))
    args = ap.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="daj-judge-stages-"))
    old, new = work / "old", work / "new"
    try:
        sh(["git", "worktree", "add", "--detach", str(old), args.old], REPO)
        copy_tree(new)
        source = new if args.pin_prompt == "new" else old
        target = old if args.pin_prompt == "new" else new
        shutil.copy2(source / "daj/judge/prompt.py", target / "daj/judge/prompt.py")
        if args.cpu_threads is not None:
            for tree in (old, new):
                set_param(tree, None, "cpu_threads", args.cpu_threads)
        print(f"data stages in {old} ...", flush=True)
        for stage in DATA_STAGES:
            run_stage(old, stage)
        for rel in COPIED:
            dest = new / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if (old / rel).is_dir() else shutil.copy2)(old / rel, dest)
        timings: dict[str, dict] = {}
        outputs: dict[str, dict] = {}
        for stage in ("pairs", "train", "bon", "pairwise"):
            if stage == "train":  # once, in the old copy (a fixed commit), on the new copy's pairs
                shutil.rmtree(old / "data/pairs")
                shutil.copytree(new / "data/pairs", old / "data/pairs")
                run_stage(old, ["train"])
                shutil.copytree(old / "models/judge", new / "models/judge")
                continue
            timings[stage], outputs[stage] = {}, {}
            for name, tree in (("old", old), ("new", new)):
                fresh_cache(tree)
                timings[stage][name] = run_stage(tree, [stage])
                outputs[stage][name] = read_outputs(tree, stage)
                print(f"{stage} {name}: {timings[stage][name]}", flush=True)
        total = {name: {k: round(sum(t[name][k] for t in timings.values()), 2) for k in ("wall_s", "cpu_s")}
                 for name in ("old", "new")}
        result = {
            "what": "pairs + bon + pairwise of the embedded default, empty judge caches, old vs new code",
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                        "load_average_at_end": list(os.getloadavg())},
            "old": args.old, "new": sh(["git", "rev-parse", "--short", "HEAD"], REPO).strip() + " + working tree",
            "prompt_module": args.pin_prompt, "cpu_threads": args.cpu_threads,
            "stages": timings,
            "total": total,
            "new_over_old": {k: round(total["new"][k] / total["old"][k], 3) for k in ("wall_s", "cpu_s")},
            "metrics": {stage: {name: json.loads(outputs[stage][name][OUTPUTS[stage][0]]) for name in ("old", "new")}
                        for stage in outputs},
            "outputs_equal": {stage: outputs[stage]["old"] == outputs[stage]["new"] for stage in outputs},
        }
        if args.greedy_check:
            greedy = {}
            for name, tree in (("old", old), ("new", new)):
                set_param(tree, "judge", "temperature", 0.0)
                fresh_cache(tree)
                run_stage(tree, ["pairs"])
                greedy[name] = read_outputs(tree, "pairs")
            differ = sorted(k for k in greedy["old"] if greedy["old"][k] != greedy["new"].get(k))
            result["greedy_pairs"] = {"outputs_equal": not differ, "files_differing": differ,
                                      "metrics": {n: json.loads(greedy[n]["metrics/pairs.json"]) for n in greedy}}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: result[k] for k in ("stages", "total", "new_over_old", "outputs_equal")}, indent=2))
        if args.greedy_check:
            print("greedy pairs equal:", result["greedy_pairs"]["outputs_equal"])
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, capture_output=True)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

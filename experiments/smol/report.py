"""The report of the smol experiment: one folder per reweighting run, rendered as Markdown tables.

    python -m experiments.smol.report experiments/smol/results/cpu_dvc [--out experiments/smol/results/cpu_dvc/report.md]

Each run folder (experiments/smol/results/cpu_dvc/<reweight>/, written by experiments/smol/experiment.sh) holds copies of
that run's metrics/pairwise.json, bon.json, train.json (and pairs.json, split.json), its `run.log`
(the `dvc exp run` output) and `seconds` (the run's wall time). The report has:
  1. pairwise accuracy on the held-out mixed pairs, both orders: the base judge (from the first run;
     it is the same model in every run) and the trained judge of each run;
  2. Best-of-3 pass@1 (%): random (exact), oracle, first, public_tests (the same in every run) and
     the judge of each run, overall and by difficulty;
  3. wall time per stage: from the `[<stage>] done in X s` lines of each run's log (a stage restored
     from DVC's run cache has no line and shows "cached").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path

from daj.errors import DajError
from daj.io import atomic_open

STAGES = ("fetch", "sample", "execute", "split", "pairs", "train", "pairwise", "bon")
DONE = re.compile(r"^\[(\w+)\] done in ([0-9.]+) s\s*$", re.MULTILINE)


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DajError(f"invalid JSON: {e.msg}", path=str(path), line=e.lineno) from None


def load_runs(root: str | Path) -> dict[str, dict]:
    """reweight -> {"pairwise", "bon", "train", "pairs", "stages": {stage: s}, "seconds"}, in run order."""
    root = Path(root)
    if not root.is_dir():
        raise DajError("no smol results folder", path=str(root))
    runs = {}
    folders = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    for d in folders:
        log = (d / "run.log").read_text(encoding="utf-8", errors="replace") if (d / "run.log").is_file() else ""
        seconds = (d / "seconds").read_text().strip() if (d / "seconds").is_file() else ""
        runs[d.name] = {name: _read(d / f"{name}.json") for name in ("pairwise", "bon", "train", "pairs")}
        runs[d.name]["train_run"] = _read(d / "train.run.json")  # timings (logs/train.json), if kept
        runs[d.name]["stages"] = {m.group(1): float(m.group(2)) for m in DONE.finditer(log)}
        runs[d.name]["seconds"] = float(seconds) if seconds else None
    if not runs:
        raise DajError("no run folders (expected experiments/smol/results/cpu_dvc/<reweight>/)", path=str(root))
    return runs


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _num(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def pairwise_rows(runs: dict[str, dict]) -> list[list[str]]:
    """Base judge once (first run that has it), then each run's trained judge."""
    judges: list[tuple[str, dict]] = []
    for name, run in runs.items():
        pw = (run.get("pairwise") or {}).get("judges") or {}
        if "base" in pw and not judges:
            judges.append(("base (no training)", pw["base"]))
        if "trained" in pw:
            judges.append((f"trained, reweight={name}", pw["trained"]))
    rows = []
    for label, m in judges:
        order = m.get("accuracy_by_order") or {}
        diff = m.get("accuracy_by_difficulty") or {}
        rows.append([label, _pct(m.get("accuracy")), _pct(order.get("pass_first")), _pct(order.get("pass_second")),
                     _pct(m.get("both_orders_accuracy")), _pct(m.get("position1_rate")),
                     _pct(m.get("format_error_rate")), _pct(diff.get("easy")), _pct(diff.get("medium")),
                     _pct(diff.get("hard")), str(m.get("n_pairs", "–"))])
    return rows


def bon_rows(runs: dict[str, dict]) -> list[list[str]]:
    """Static methods from the first run with bon metrics, then the judge of every run (every policy)."""
    rows, static_done = [], False
    for name, run in runs.items():
        for policy, methods in (run.get("bon") or {}).items():
            if not static_done:
                for method in ("random", "oracle", "first", "public_tests"):
                    if method in methods:
                        m = methods[method]
                        rows.append([f"{method} ({policy})", *(_num(m.get(k)) for k in ("overall", "easy", "medium",
                                                                                          "hard")), str(m.get("n"))])
            if "judge" in methods:
                m = methods["judge"]
                rows.append([f"judge, reweight={name} ({policy})",
                             *(_num(m.get(k)) for k in ("overall", "easy", "medium", "hard")), str(m.get("n"))])
        static_done = static_done or bool(run.get("bon"))
    return rows


def time_rows(runs: dict[str, dict]) -> list[list[str]]:
    rows = []
    for name, run in runs.items():
        cells = [f"{run['stages'][s]:.0f}" if s in run["stages"] else "cached" for s in STAGES]
        rows.append([name, *cells, _num(run.get("seconds"))])
    return rows


def render(runs: dict[str, dict]) -> str:
    lines = ["# smol experiment: SmolLM2-135M judge on LiveCodeBench (O1-Mini, O1-Preview, Kimi-k1.6)", "",
             f"Rendered {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node() or 'unknown host'} "
             f"({os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}).", ""]
    first = next(iter(runs.values()))
    split = (first.get("pairwise") or {}).get("split", "test")
    lines += [f"## Pairwise accuracy on mixed pairs of the {split} split (%; both orders)", "",
              *_table(["judge", "accuracy", "pass shown 1st", "pass shown 2nd", "both orders right",
                       "picks position 1", "format errors", "easy", "medium", "hard", "pairs"], pairwise_rows(runs)),
              "", "## Best-of-3 pass@1 (%)", "",
              *_table(["method", "overall", "easy", "medium", "hard", "problems"], bon_rows(runs)),
              "", "## Wall time per stage (s)", "",
              *_table(["run", *STAGES, "total"], time_rows(runs)), ""]
    for name, run in runs.items():
        train = run.get("train") or {}
        if train:
            lines.append(f"- {name}: {train.get('objective')} {train.get('steps')} steps, final loss "
                         f"{train.get('final_loss')}, meta loss {train.get('meta_loss')}, meta accuracy "
                         f"{train.get('meta_acc')}, "
                         f"{train.get('seconds_per_step', (run.get('train_run') or {}).get('seconds_per_step'))} s/step"
                         + (f", domain weights {train['domain_weights']}" if train.get("domain_weights") else ""))
    return "\n".join(lines).rstrip() + "\n"


REFERENCES = ("random", "public_tests", "oracle")
BON_METHODS = ("judge", "hybrid", "judge_swap", "hybrid_swap")


def _ci(ci) -> str:
    return "–" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def scale_pairwise_rows(judges: dict[str, dict]) -> list[list[str]]:
    """One row per judge: accuracy with its interval, per order, position 1, swap consistency."""
    rows = []
    for name, res in judges.items():
        m = res.get("pairwise") or {}
        order = m.get("accuracy_by_order") or {}
        order_ci = m.get("accuracy_by_order_ci95") or {}
        rows.append([name, _pct(m.get("accuracy")), _ci(m.get("accuracy_ci95")),
                     f"{_pct(order.get('pass_first'))} {_ci(order_ci.get('pass_first'))}",
                     f"{_pct(order.get('pass_second'))} {_ci(order_ci.get('pass_second'))}",
                     _pct(m.get("position1_rate")), _pct(m.get("swap_consistency")),
                     f"{_pct(m.get('swap_combined_accuracy'))} {_ci(m.get('swap_combined_accuracy_ci95'))}",
                     "–" if m.get("mean_tag_margin") is None else f"{m['mean_tag_margin']:+.2f}",
                     str(m.get("n_pairs", "–"))])
    return rows


def scale_bon_rows(judges: dict[str, dict]) -> list[list[str]]:
    """The references once (exact), then judge / hybrid (with and without swap) per judge."""
    rows = []
    first = next(iter(judges.values()), {}).get("bon") or {}
    for method in REFERENCES:
        if method in first:
            m = first[method]
            rows.append([method, *(_num(m.get(k)) for k in ("overall", "easy", "medium", "hard")), str(m.get("n"))])
    for name, res in judges.items():
        for method in BON_METHODS:
            m = (res.get("bon") or {}).get(method)
            if m:
                rows.append([f"{method}, {name}", *(_num(m.get(k)) for k in ("overall", "easy", "medium", "hard")),
                             str(m.get("n"))])
    return rows


def render_scale(root: str | Path) -> str:
    """The report of experiments/smol/scale.py from its folder (config.json, results.json, runs/*, diagnose.json)."""
    root = Path(root)
    config = _read(root / "config.json") or {}
    results = _read(root / "results.json")
    if results is None:
        raise DajError("no results.json (run experiments/smol/scale.py first)", path=str(root))
    judges = results.get("judges") or {}
    machine = config.get("machine") or {}
    cfg = config.get("settings") or {}
    lines = [f"# smol experiment at scale ({config.get('profile', '?')} profile): SmolLM2-135M judge", "",
             f"Run {machine.get('date', '?')} on {machine.get('host', '?')} ({machine.get('cpus', '?')} CPUs, "
             f"{machine.get('gpu') or 'no GPU'}, torch {machine.get('torch', '?')}); {results.get('seconds', '?')} s "
             "in all.", "",
             "Settings: " + ", ".join(f"{k} {v}" for k, v in cfg.items()), "",
             "Training pairs (all mixed pairs of the chosen problems, both orders): "
             + "; ".join(f"{s} {v.get('problems_used')} problems, {v.get('records')} records"
                         for s, v in (config.get("pairs") or {}).items()), "",
             "Judges answer the likelier tag (greedy); `swap` sums the two orders' log-probabilities of "
             "each program being picked. Best-of-3 values are the exact expectations of the paper's vote "
             f"(R = {cfg.get('rounds', '?')} uniform ordered pairs, ties at random).", "",
             "## Pairwise accuracy on the held-out mixed pairs (%, 95% bootstrap intervals over problems)", "",
             *_table(["judge", "accuracy", "95% CI", "pass shown 1st", "pass shown 2nd", "picks position 1",
                      "swap consistency", "swap-combined accuracy", "mean log p(1) - log p(2)", "pairs"],
                     scale_pairwise_rows(judges)),
             "", "## Best-of-3 pass@1 (%)", "",
             *_table(["method", "overall", "easy", "medium", "hard", "problems"], scale_bon_rows(judges)), ""]
    full = results.get("references_all_test_problems") or {}
    if full:
        lines += ["References on every held-out problem (exact): " + ", ".join(
            f"{m} {_num(full[m].get('overall'))}" for m in ("random", "public_tests", "oracle", "first") if m in full)
            + f" ({(full.get('random') or {}).get('n')} problems).", ""]
    if results.get("test_problems") and len(results["test_problems"]) < (full.get("random") or {}).get("n", 0):
        lines += [f"The judges were evaluated on {len(results['test_problems'])} contested held-out problems only "
                  "(a seeded choice among those with a passing and a failing candidate; the CPU cap); the "
                  "Best-of-3 rows above cover those problems.", ""]
    runs = sorted((root / "runs").glob("*/train.json")) if (root / "runs").is_dir() else []
    if runs:
        lines += ["## Training runs", "",
                  *_table(["run", "steps", "final loss", "meta loss", "meta accuracy", "s/step", "wall s"],
                          [[p.parent.name, *(str((_read(p) or {}).get(k, "–")) for k in
                                             ("steps", "final_loss", "meta_loss", "meta_acc", "seconds_per_step",
                                              "wall_seconds"))] for p in runs]), ""]
    diag = _read(root / "diagnose.json")
    if diag:
        lines += ["## Diagnosis of the collapse to position 1", "", "```json",
                  json.dumps(diag, indent=1)[:6000], "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m experiments.smol.report", description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="experiments/smol/results/cpu_dvc", help="the folder with one subfolder per run")
    ap.add_argument("--out", help="write the Markdown here (default: print it)")
    args = ap.parse_args(argv)
    text = render(load_runs(args.root))
    if args.out:
        with atomic_open(args.out) as fh:
            fh.write(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    import sys

    try:
        main()
    except DajError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

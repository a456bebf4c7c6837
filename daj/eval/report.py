"""Reports of the Best-of-N results: the paper's Table 2 and Table 4 layouts, and the README's figures.

    python -m daj.eval.report [--json exp_show.json] [--out metrics/report.md] [--run NAME]
    python -m daj.eval.report --readme [README.md]          # rewrite the generated block from metrics/
    python -m daj.eval.report --readme --check [README.md]  # exit 1 when README and metrics disagree

**Experiments report** (from `dvc exp show --json`, run here unless --json gives a saved one):
- Table 2 layout for one run (the workspace when it has Best-of-N metrics, else the baseline commit,
  or --run NAME): per policy, every method of metrics/bon.json with its pass@1 overall and by
  difficulty and its 95% bootstrap interval, then the judge's paired margins over random and
  public_tests;
- Table 4 layout: one row per run with Best-of-N metrics (the workspace, the baseline and every
  experiment), judge pass@1 by (objective, reweight), with the params that differ from the
  baseline's in its last column. Duplicates are all kept: a cell (policy, objective, reweight) with
  several runs shows each of them, and a note names them and what tells them apart (nothing is
  dropped silently). When runs side by side differ in a param outside the grid axes (reweight,
  train.objective), a warning lists the param and each run's value: such rows are not comparable.
  Cache locations (`caches.*`) never count as a difference.

**README figures** (--readme): the text between `<!-- daj:generated:begin -->` and
`<!-- daj:generated:end -->` in README.md is rendered from the committed metrics files (split,
execute, pairs, bon, pairwise) and params.yaml, so the figures cannot go stale;
tests/eval/test_report.py fails when README and metrics disagree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from daj import artifacts
from daj.errors import DajError
from daj.io import atomic_open

COLUMNS = ("overall", "easy", "medium", "hard")
GRID_AXES = ("reweight", "train.objective")
IGNORED_PARAMS = ("caches.",)   # where caches live never changes a result
# Table 2's order: the references, the paper's baselines, the judge, the hybrid, the bound
METHOD_ORDER = ("random", "first", "public_tests", "prm", "grm", "judge", "hybrid", "oracle")
METHOD_LABELS = {"random": "random (exact)", "first": "first", "public_tests": "public tests",
                 "prm": "PRM (Skywork-style)", "grm": "GRM (DeepSeek-style)", "judge": "judge (DaJ)",
                 "hybrid": "hybrid (judge among public-test passers)", "oracle": "oracle"}
BEGIN, END = "<!-- daj:generated:begin -->", "<!-- daj:generated:end -->"


# ---- reading dvc exp show -------------------------------------------------------------------------

def _records(exp_show: list[dict]) -> Iterator[tuple[str, str, dict]]:
    """Yield (name, kind, data) for the workspace, each baseline and each of its experiments."""
    for entry in exp_show:
        rev = entry.get("rev", "")
        name = entry.get("name") or (rev if rev == "workspace" else rev[:7])
        if entry.get("data"):
            yield name, "workspace" if rev == "workspace" else "baseline", entry["data"]
        for exp in entry.get("experiments") or []:
            for r in exp.get("revs") or []:
                if r.get("data"):
                    yield r.get("name") or r.get("rev", "")[:7], "experiment", r["data"]


def _get(data: dict, file: str, kind: str) -> dict:
    node = (data.get(kind) or {}).get(file) or {}
    return node.get("data") or {}


def flatten(node, prefix: str = "") -> dict[str, object]:
    """Nested params as {dotted key: value} (lists kept whole)."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, object] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else
                   {f"{prefix}{key}": value})
    return out


def param_diff(params: dict, baseline: dict) -> dict[str, tuple[object, object]]:
    """{dotted key: (value, baseline value)} for every param that differs from the baseline's."""
    a, b = flatten(params), flatten(baseline)
    keys = sorted(set(a) | set(b))
    return {k: (a.get(k), b.get(k)) for k in keys
            if a.get(k) != b.get(k) and not k.startswith(IGNORED_PARAMS)}


def collect_rows(exp_show: list[dict]) -> list[dict]:
    """One row per (run, policy) with Best-of-N judge metrics; every run kept (see the module docstring)."""
    records = list(_records(exp_show))
    baseline = next((_get(d, "params.yaml", "params") for _, kind, d in records if kind == "baseline"), None)
    if baseline is None:
        baseline = next((_get(d, "params.yaml", "params") for _, _, d in records), {})
    rows = []
    for name, kind, data in records:
        params = _get(data, "params.yaml", "params")
        bon = _get(data, artifacts.metrics("bon"), "metrics")
        train = _get(data, artifacts.metrics("train"), "metrics")
        if not params or not bon:
            continue
        objective = train.get("objective") or params.get("train", {}).get("objective")
        reweight = train.get("reweight") or params.get("reweight")
        flat = flatten(params)
        for policy, methods in bon.items():
            if not isinstance(methods, dict) or "judge" not in methods:
                continue
            rows.append({"experiment": name, "kind": kind, "policy": policy, "objective": objective,
                         "reweight": reweight, "methods": methods, "judge": methods["judge"],
                         "random": methods.get("random", {}), "oracle": methods.get("oracle", {}),
                         "meta_loss": train.get("meta_loss"), "params": flat,
                         "diff": param_diff(params, baseline)})
    return sorted(rows, key=lambda r: (r["policy"], str(r["objective"]), str(r["reweight"]), r["experiment"]))


def comparability(rows: list[dict]) -> dict[str, dict[str, object]]:
    """{param: {experiment: value}} for every param outside the grid axes that differs among `rows`."""
    keys = sorted({k for r in rows for k in r["params"]} - set(GRID_AXES))
    out = {}
    for key in keys:
        if key.startswith(IGNORED_PARAMS):
            continue
        values = {r["experiment"]: r["params"].get(key) for r in rows}
        if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
            out[key] = values
    return out


# ---- formatting -------------------------------------------------------------------------------------

def _fmt(value, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _ci(entry: dict) -> str:
    ci = entry.get("ci95")
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if isinstance(ci, list) and len(ci) == 2 else "-"


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _signed(value) -> str:
    return f"{value:+.1f}" if isinstance(value, int | float) else "-"


def table2(bon: dict, labels: dict[str, str] | None = None) -> list[str]:
    """Markdown lines: per policy, the methods with pass@1 [95% CI] and by difficulty, then the margins."""
    labels = {**METHOD_LABELS, **(labels or {})}
    out = []
    for policy, methods in bon.items():
        if len(bon) > 1:
            out += [f"policy `{policy}`:", ""]
        n = next((m.get("n") for m in methods.values() if isinstance(m, dict)), "-")
        out += [f"| method (n = {n} problems) | pass@1 | 95% CI | easy | medium | hard |", "|---|---|---|---|---|---|"]
        order = [m for m in METHOD_ORDER if m in methods] + [m for m in methods if m not in METHOD_ORDER]
        for m in order:
            e = methods[m]
            extra = f" ({e['unparsable']} answers without a score)" if e.get("unparsable") else ""
            out.append(f"| {labels.get(m, m)}{extra} | {_fmt(e.get('overall'))} | {_ci(e)} | "
                       + " | ".join(_fmt(e.get(c)) for c in COLUMNS[1:]) + " |")
        margins = []
        for m in ("judge", "hybrid"):
            for ref in ("random", "public_tests"):
                d = (methods.get(m) or {}).get(f"minus_{ref}")
                if isinstance(d, dict):
                    margins.append(f"{m} - {ref} {_signed(d.get('diff'))} {_ci(d)}")
        if margins:
            out += ["", "Paired margins (same problems resampled, 95% CI, points): " + "; ".join(margins) + "."]
        out.append("")
    return out


def render(rows: list[dict], table2_run: tuple[str, dict] | None = None) -> str:
    """The experiments report (module docstring)."""
    out = ["# Best-of-N report", ""]
    if table2_run is not None:
        name, bon = table2_run
        out += [f"## Table 2 layout: every method (run `{name}`; pass@1 %)", "", *table2(bon)]
    if not rows:
        out += ["No experiment with metrics/bon.json and a `judge` method was found.", ""]
        return "\n".join(out)
    out += ["## Table 4 layout: the judge by objective and reweighting (pass@1 %)", ""]
    for policy in sorted({r["policy"] for r in rows}):
        prow = [r for r in rows if r["policy"] == policy]
        out += [f"### policy `{policy}`", "",
                "| objective | reweighting | " + " | ".join(COLUMNS) + " | 95% CI | minus random | n | meta loss "
                "| experiment | params differing from the baseline |",
                "|---|---|" + "---|" * (len(COLUMNS) + 6)]
        for label in ("random", "oracle"):
            ref = prow[0][label]
            out.append(f"| {label} | - | " + " | ".join(_fmt(ref.get(c)) for c in COLUMNS)
                       + f" | {_ci(ref)} | - | {ref.get('n', '-')} | - | - | - |")
        for r in prow:
            j = r["judge"]
            margin = j.get("minus_random")
            margin_text = f"{_signed(margin.get('diff'))} {_ci(margin)}" if isinstance(margin, dict) else "-"
            diff = ", ".join(f"{k}={_short(v)}" for k, (v, _) in r["diff"].items()) or "(none)"
            out.append(f"| {r['objective']} | {r['reweight']} | " + " | ".join(_fmt(j.get(c)) for c in COLUMNS)
                       + f" | {_ci(j)} | {margin_text} | {j.get('n', '-')}"
                       + f" | {_fmt(r['meta_loss'], 4)} | {r['experiment']} | {diff} |")
        out.append("")
        cells: dict[tuple, list[dict]] = {}
        for r in prow:
            cells.setdefault((r["objective"], r["reweight"]), []).append(r)
        for (objective, reweight), runs in cells.items():
            if len(runs) > 1:
                apart = comparability(runs)
                why = "; ".join(f"{k}: " + ", ".join(f"{e}={_short(v)}" for e, v in vals.items())
                                for k, vals in apart.items())
                out.append(f"- Note: cell ({objective}, {reweight}) has {len(runs)} runs, all shown: "
                           f"{', '.join(r['experiment'] for r in runs)}; "
                           + (f"they differ in {why}." if why else "their params are identical (reruns)."))
        apart = comparability(prow)
        if apart:
            out.append("- **Warning**: these runs differ outside the grid axes (" + ", ".join(GRID_AXES)
                       + "), so their rows are not comparable: "
                       + "; ".join(f"`{k}`: " + ", ".join(f"{e}={_short(v)}" for e, v in vals.items())
                                   for k, vals in apart.items()) + ".")
        out.append("")
    return "\n".join(out)


def pick_table2_run(exp_show: list[dict], name: str | None) -> tuple[str, dict] | None:
    """(name, bon metrics) of the run for Table 2: `name`, else the workspace, else the baseline."""
    runs = [(n, kind, _get(d, artifacts.metrics("bon"), "metrics")) for n, kind, d in _records(exp_show)]
    runs = [r for r in runs if r[2]]
    if name is not None:
        found = [r for r in runs if r[0] == name]
        if not found:
            raise DajError(f"no run named {name!r} with metrics/bon.json; runs: {', '.join(r[0] for r in runs)}")
        return found[0][0], found[0][2]
    for kind in ("workspace", "baseline"):
        for n, k, bon in runs:
            if k == kind:
                return n, bon
    return None


def load_exp_show(path: str | None) -> list[dict]:
    if path:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True,
                              check=True)  # the dvc of this interpreter, whatever PATH says
    except (OSError, subprocess.CalledProcessError) as e:
        raise DajError(f"`dvc exp show --json` failed: {getattr(e, 'stderr', e)}") from None
    return json.loads(proc.stdout)


# ---- README ---------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DajError("metrics file not found (run the pipeline first)", path=str(path)) from None


def readme_block(metrics: Path = Path("metrics"), params_file: Path = Path("params.yaml")) -> str:
    """The README's generated figures (between the markers) from the metrics files and params."""
    from daj.params import load_config

    config = load_config(params_file)
    split = _read_json(metrics / "split.json")
    execute = _read_json(metrics / "execute.json")
    pairs = _read_json(metrics / "pairs.json")
    bon = _read_json(metrics / "bon.json")
    pairwise = _read_json(metrics / "pairwise.json")
    domains = sorted({d for per in split.get("domains", {}).values() for d in per})
    lines = [BEGIN, "<!-- generated by `python -m daj.eval.report --readme` from metrics/ and params.yaml; "
             "do not edit by hand -->", "",
             f"- **split**: {split['lower']} lower / {split['upper']} upper / {split['test']} test problems, "
             f"{len(domains)} domains ({', '.join(domains)})."]
    for policy, e in execute.items():
        status = e.get("status", {})
        failed = ", ".join(f"{n:,} {s.replace('_', ' ')}" for s, n in sorted(status.items()) if s != "pass")
        lines.append(f"- **candidates** (`{policy}`): {e['candidates']:,}; {e['passed']:,} pass "
                     f"({failed}); {e.get('public_passed', 0):,} pass the public tests.")
    lines.append(f"- **pairs**: {pairs['lower']['pairs']:,} lower and {pairs['upper']['pairs']:,} upper mixed pairs; "
                 f"{pairs['lower']['preference_records']:,} and {pairs['upper']['preference_records']:,} "
                 "preference records.")
    n = next(iter(next(iter(bon.values())).values())).get("n")
    lines += ["", f"**Best-of-N on the {n} `{config.bon.split}` problems** (pass@1 %, R = {config.bon.rounds}; "
              "95% bootstrap intervals over problems):", "", *table2(bon)]
    judges = pairwise.get("judges", {})
    parts = []
    for who in ("base", "trained"):
        j = judges.get(who)
        if j:
            ci = j.get("accuracy_ci95")
            band = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, list) else ""
            parts.append(f"{who} judge {_fmt(j.get('accuracy'), 3)}{band}, swap consistency "
                         f"{_fmt(j.get('swap_consistency'), 3)}")
    pairs_n = next((j.get("n_pairs") for j in judges.values()), "-")
    lines += [f"- **pairwise accuracy** on the {pairs_n} `{pairwise.get('split')}` mixed pairs (both orders): "
              + "; ".join(parts) + ".", END]
    return "\n".join(lines)


def replace_block(text: str, block: str, where: str = "README.md") -> str:
    """`text` with the part between the markers (markers included) replaced by `block`."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise DajError(f"expected one {BEGIN} ... {END} block", path=where)
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block + text[stop:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m daj.eval.report", description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="a saved `dvc exp show --json` output (default: run it)")
    ap.add_argument("--out", default="metrics/report.md")
    ap.add_argument("--run", help="the run shown in the Table 2 layout (default: workspace, else baseline)")
    ap.add_argument("--readme", nargs="?", const="README.md", help="rewrite README's generated block")
    ap.add_argument("--check", action="store_true", help="with --readme: only check, exit 1 when stale")
    args = ap.parse_args(argv)
    try:
        if args.readme:
            path = Path(args.readme)
            text = path.read_text(encoding="utf-8")
            new = replace_block(text, readme_block(), str(path))
            if args.check:
                if new != text:
                    print(f"{path}: the generated figures differ from metrics/; run "
                          "`python -m daj.eval.report --readme`", file=sys.stderr)
                    return 1
                return 0
            if new != text:
                with atomic_open(path) as fh:
                    fh.write(new)
            return 0
        exp_show = load_exp_show(args.json)
        text = render(collect_rows(exp_show), pick_table2_run(exp_show, args.run))
    except DajError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with atomic_open(args.out) as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Render the paper's Table 4 layout (objective x reweighting, pass@1 by difficulty) from DVC experiments.

Usage: `python -m daj.eval.report [--json exp_show.json] [--out metrics/report.md]`. Without --json it
runs `dvc exp show --json` itself. Each experiment (and the workspace) contributes one row per
(objective, reweight): the judge's Best-of-N pass@1 on the bon split, next to random and oracle.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

from daj.errors import DajError
from daj.io import atomic_open

COLUMNS = ("overall", "easy", "medium", "hard")


def _records(exp_show: list[dict]) -> Iterator[tuple[str, dict]]:
    """Yield (name, data) for the workspace, each baseline and each of its experiments."""
    for entry in exp_show:
        rev = entry.get("rev", "")
        name = entry.get("name") or (rev if rev == "workspace" else rev[:7])
        if entry.get("data"):
            yield name, entry["data"]
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("data"):
                    yield rev.get("name") or rev.get("rev", "")[:7], rev["data"]


def _get(data: dict, file: str, kind: str) -> dict:
    node = (data.get(kind) or {}).get(file) or {}
    return node.get("data") or {}


def collect_rows(exp_show: list[dict]) -> list[dict]:
    """One row per experiment that has Best-of-N metrics; newest value wins per (objective, reweight)."""
    rows: dict[tuple, dict] = {}
    for name, data in _records(exp_show):
        params = _get(data, "params.yaml", "params")
        bon = _get(data, "metrics/bon.json", "metrics")
        train = _get(data, "metrics/train.json", "metrics")
        if not params or not bon:
            continue
        objective = train.get("objective") or params.get("train", {}).get("objective")
        reweight = train.get("reweight") or params.get("reweight")
        for policy, methods in bon.items():
            if not isinstance(methods, dict) or "judge" not in methods:
                continue
            key = (policy, objective, reweight)
            if key in rows:
                continue
            rows[key] = {"experiment": name, "policy": policy, "objective": objective, "reweight": reweight,
                         "judge": methods["judge"], "random": methods.get("random", {}),
                         "oracle": methods.get("oracle", {}), "meta_loss": train.get("meta_loss")}
    return sorted(rows.values(), key=lambda r: (r["policy"], str(r["objective"]), str(r["reweight"])))


def _fmt(value) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def _fmt4(value) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def render(rows: list[dict]) -> str:
    """Markdown: per policy, the random and oracle references, then one line per objective x reweight."""
    if not rows:
        return "# Best-of-N report\n\nNo experiment with metrics/bon.json and a `judge` method was found.\n"
    out = ["# Best-of-N report (pass@1 %, judge selection)", ""]
    for policy in sorted({r["policy"] for r in rows}):
        prow = [r for r in rows if r["policy"] == policy]
        out += [f"## policy `{policy}`", "",
                "| objective | reweighting | " + " | ".join(COLUMNS) + " | n | meta loss | experiment |",
                "|---|---|" + "---|" * (len(COLUMNS) + 3)]
        for label in ("random", "oracle"):
            ref = prow[0][label]
            out.append(f"| {label} | - | " + " | ".join(_fmt(ref.get(c)) for c in COLUMNS)
                       + f" | {ref.get('n', '-')} | - | - |")
        for r in prow:
            j = r["judge"]
            out.append(f"| {r['objective']} | {r['reweight']} | " + " | ".join(_fmt(j.get(c)) for c in COLUMNS)
                       + f" | {j.get('n', '-')} | {_fmt4(r['meta_loss'])}"
                       + f" | {r['experiment']} |")
        out.append("")
    return "\n".join(out)


def load_exp_show(path: str | None) -> list[dict]:
    if path:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        proc = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise DajError(f"`dvc exp show --json` failed: {getattr(e, 'stderr', e)}") from None
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="a saved `dvc exp show --json` output (default: run it)")
    ap.add_argument("--out", default="metrics/report.md")
    args = ap.parse_args(argv)
    text = render(collect_rows(load_exp_show(args.json)))
    with atomic_open(args.out) as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()

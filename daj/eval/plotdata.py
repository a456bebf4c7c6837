"""Plot data of the bon stage: long CSVs for the plot templates (.dvc/plots: `daj_bars`, `daj_lines`).

Every file has a `series` column (the method, or `policy/method` when bon.policies has several) and
the 95% interval of each value in `lo` / `hi`:
- `difficulty_rows` -> metrics/bon_difficulty.csv (difficulty, series, pass1, lo, hi): one bar per
  method within each difficulty, grouped, never stacked (one row per bar);
- `curve_rows` -> metrics/bon_scaling_n.csv (n, series, pass1, lo, hi) and metrics/bon_scaling_r.csv
  (rounds, ...): the scaling curves with their intervals as a band.
Intervals are percentile-bootstrap intervals over the problems behind each value
(daj.eval.intervals), seeded by (seed, policy, method, difficulty or x): deterministic; an overall bar
carries the `ci95` of metrics/bon.json.
"""

from __future__ import annotations

from daj.data.schema import DIFFICULTIES
from daj.eval.intervals import bootstrap_mean, percent
from daj.hashing import stable_seed

LEVELS = ("overall", *DIFFICULTIES)


def series_name(policy: str, method: str, several: bool) -> str:
    return f"{policy}/{method}" if several else method


def difficulty_rows(policy: str, summary: dict, problems: list[dict], scores: dict[str, dict[str, float]],
                    seed: int, reps: int, several: bool = False) -> list[dict]:
    """One bar per (difficulty, method) with its interval (a difficulty without problems: no bar)."""
    rows = []
    for level in LEVELS:
        ids = [p["id"] for p in problems if level == "overall" or p.get("difficulty") == level]
        for method, entry in summary.items():
            if entry.get(level) is None:
                continue
            if level == "overall" and entry.get("ci95"):  # the interval bon.json reports
                ci = entry["ci95"]
            else:
                ci = percent(bootstrap_mean([scores[method][i] for i in ids],
                                            stable_seed(seed, policy, method, level), reps)) if reps else None
            rows.append({"difficulty": level, "series": series_name(policy, method, several),
                         "pass1": entry[level], "lo": ci[0] if ci else "", "hi": ci[1] if ci else ""})
    return rows


def curve_rows(long_rows: list[dict], x: str, several: bool = False) -> list[dict]:
    """Scaling rows (daj.eval.scaling, with `low`/`high`) as (x, series, pass1, lo, hi)."""
    return [{x: r[x], "series": series_name(r["policy"], r["method"], several), "pass1": r["overall"],
             "lo": r.get("low", ""), "hi": r.get("high", "")} for r in long_rows]

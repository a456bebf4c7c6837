"""Plot data of the bon stage in long form, one row per (policy, method, x), with 95% intervals.

- `difficulty_rows` -> metrics/bon_difficulty.csv: (policy, method, difficulty, pass1, low, high): one
  bar per method within each difficulty (grouped, not stacked: one row per bar, never summed).
- `band_rows` -> metrics/bon_scaling_{n,r}_band.csv: (policy, <x>, method, pass1, low, high): the
  scaling curves with their intervals as a band.
Intervals are percentile-bootstrap intervals over the problems of the row (daj.eval.intervals),
seeded by (seed, policy, method, difficulty): deterministic.
"""

from __future__ import annotations

from daj.data.schema import DIFFICULTIES
from daj.eval.intervals import bootstrap_mean, percent
from daj.hashing import stable_seed

LEVELS = ("overall", *DIFFICULTIES)


def difficulty_rows(policy: str, summary: dict, problems: list[dict], scores: dict[str, dict[str, float]],
                    seed: int, reps: int) -> list[dict]:
    """The Best-of-N table in long form with each bar's interval (a difficulty without problems: no row)."""
    rows = []
    for method, entry in summary.items():
        for level in LEVELS:
            if entry.get(level) is None:
                continue
            ids = [p["id"] for p in problems if level == "overall" or p.get("difficulty") == level]
            ci = percent(bootstrap_mean([scores[method][i] for i in ids], stable_seed(seed, policy, method, level),
                                        reps)) if reps else None
            rows.append({"policy": policy, "method": method, "difficulty": level, "pass1": entry[level],
                         "low": ci[0] if ci else "", "high": ci[1] if ci else ""})
    return rows


def band_rows(long_rows: list[dict], x: str) -> list[dict]:
    """Scaling rows (daj.eval.scaling, with `low`/`high`) as (policy, x, method, pass1, low, high)."""
    return [{"policy": r["policy"], x: r[x], "method": r["method"], "pass1": r["overall"],
             "low": r.get("low", ""), "high": r.get("high", "")} for r in long_rows]

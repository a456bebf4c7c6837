"""The lower / upper / test split of the problems, with domains (daj.data.schema.domain_of).

Rules (all deterministic; problems on `split.exclude_platforms` are dropped first, from every split):

- lcb: temporal windows on release_date. lower: date < split.lcb_upper_start; upper:
  lcb_upper_start <= date < lcb_test_start; test: lcb_test_start <= date < lcb_test_end; later
  dates are dropped. Domains: platform x difficulty.
- bcb: test = the Hard subset (`hard` true). The other tasks are ranked from hardest to easiest
  and the first round(split.bcb_upper_fraction * n) go to upper, the rest to lower. Rule
  "pass_rate" (when every such task has verdicts in data/verdicts/*.jsonl): the mean `passed` over
  all candidates of all policies, lowest first; ties by larger reference solution (AST nodes),
  then by task number. Rule "solution_size" (fallback, when some task has no verdict): larger
  reference solution first, then task number. metrics/split.json records the rule as
  "bcb_upper_rule". Domains: the seven categories.
- humaneval: pseudo-temporal. Problems ordered by task number are cut by
  split.humaneval_fractions [lower, upper, test] (boundaries rounded half up on the cumulative
  fractions, which sum to 1). Domains:
  humaneval x difficulty.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from daj.config import SplitConfig
from daj.data.humaneval import task_number
from daj.data.measures import ast_size, natural_key, round_half_up
from daj.data.schema import SPLITS, domain_of
from daj.errors import DajError
from daj.io import iter_jsonl


def read_verdicts(directory: str | Path) -> tuple[dict[str, list[bool]], list[str]]:
    """problem_id -> every `passed` verdict in directory/*.jsonl, and the files read."""
    passed: dict[str, list[bool]] = defaultdict(list)
    files = sorted(Path(directory).glob("*.jsonl")) if Path(directory).is_dir() else []
    for path in files:
        for line, row in iter_jsonl(path, required=("problem_id", "passed")):
            if not isinstance(row["passed"], bool):
                raise DajError(f"expected true or false, got {row['passed']!r}", path=str(path), line=line,
                               field="passed")
            passed[str(row["problem_id"])].append(row["passed"])
    return dict(passed), [str(f) for f in files]


def assign_lcb(problems: list[dict], split: SplitConfig, source: str | None = None) -> tuple[dict[str, str], dict]:
    """problem id -> split by the temporal windows; extras for the metrics."""
    windows = split.lcb_windows()
    out, late = {}, 0
    for p in problems:
        date = p.get("release_date")
        if not isinstance(date, str):
            raise DajError(f"problem {p['id']} has no release_date; LCB's temporal split needs one",
                           path=source, field="release_date")
        for name, (start, end) in windows.items():
            if (start is None or start <= date) and date < end:
                out[p["id"]] = name
                break
        else:
            late += 1
    return out, {"rule": "lcb_temporal", "windows": {k: list(v) for k, v in windows.items()},
                 "dropped_after_test_end": late}


def _size(p: dict) -> int:
    size = p.get("solution_size")
    if isinstance(size, int):
        return size
    return ast_size(p.get("reference") or "") or 0


def assign_bcb(problems: list[dict], split: SplitConfig,
               verdicts: dict[str, list[bool]]) -> tuple[dict[str, str], dict]:
    """Hard -> test; the rest ranked by policy pass rate (or the size fallback) into upper/lower."""
    fraction = split.bcb_upper_fraction
    out = {p["id"]: "test" for p in problems if p.get("hard")}
    rest = [p for p in problems if not p.get("hard")]
    covered = [p for p in rest if verdicts.get(p["id"])]
    rate = {p["id"]: sum(verdicts[p["id"]]) / len(verdicts[p["id"]]) for p in covered}
    if rest and len(covered) == len(rest):
        rule = "pass_rate"
        ranked = sorted(rest, key=lambda p: (rate[p["id"]], -_size(p), natural_key(p["id"])))
    else:
        rule = "solution_size"
        ranked = sorted(rest, key=lambda p: (-_size(p), natural_key(p["id"])))
    n_upper = round_half_up(fraction * len(rest))
    for i, p in enumerate(ranked):
        out[p["id"]] = "upper" if i < n_upper else "lower"
    return out, {"rule": "bcb_hard_test", "bcb_upper_rule": rule,
                 "bcb_verdict_coverage": {"with_verdicts": len(covered), "tasks": len(rest)},
                 "pass_rate": rate}


def assign_humaneval(problems: list[dict], split: SplitConfig) -> tuple[dict[str, str], dict]:
    """Cut the problems, ordered by task number, by split.humaneval_fractions."""
    fr = split.humaneval_fractions
    ordered = sorted(problems, key=lambda p: p["order"] if "order" in p else task_number(p["title"]))
    n = len(ordered)
    bounds = [round_half_up(fr[0] * n), round_half_up((fr[0] + fr[1]) * n), round_half_up(sum(fr) * n)]
    out = {}
    for i, p in enumerate(ordered):
        for name, bound in zip(SPLITS, bounds, strict=True):
            if i < bound:
                out[p["id"]] = name
                break
    return out, {"rule": "humaneval_pseudo_temporal", "fractions": list(fr),
                 "dropped_after_test_end": n - bounds[2]}


def split_problems(problems: list[dict], split: SplitConfig, verdicts: dict[str, list[bool]] | None = None,
                   source: str | None = None) -> tuple[dict[str, list[dict]], dict]:
    """split name -> rows (problem fields + split + domain), and the metrics/split.json object.

    `source` (the problems file) only names the file in error messages.
    """
    excluded_platforms = split.excluded
    benchmarks = {p["benchmark"] for p in problems}
    if len(benchmarks) != 1:
        raise DajError(f"expected the problems of one benchmark, got {', '.join(sorted(benchmarks)) or 'none'}",
                       path=source, field="benchmark")
    benchmark = benchmarks.pop()
    kept = [p for p in problems if p["platform"].lower() not in excluded_platforms]
    excluded = Counter(p["platform"] for p in problems if p["platform"].lower() in excluded_platforms)
    if benchmark == "lcb":
        assignment, extras = assign_lcb(kept, split, source)
    elif benchmark == "bcb":
        assignment, extras = assign_bcb(kept, split, verdicts or {})
    else:
        assignment, extras = assign_humaneval(kept, split)
    pass_rate = extras.pop("pass_rate", {})
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for p in kept:
        name = assignment.get(p["id"])
        if name is not None:
            row = {**p, "split": name, "domain": domain_of(p)}
            if p["id"] in pass_rate:
                row["policy_pass_rate"] = pass_rate[p["id"]]
            splits[name].append(row)
    metrics: dict = {name: len(rows) for name, rows in splits.items()}
    metrics["domains"] = {name: dict(sorted(Counter(r["domain"] for r in rows).items()))
                          for name, rows in splits.items()}
    metrics.update({"benchmark": benchmark, "problems": len(problems),
                    "excluded": dict(sorted(excluded.items())), **extras})
    return splits, metrics

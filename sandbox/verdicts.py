"""The execute stage's library half: candidates in, verdict rows and per-policy metrics out.

Rows and metrics hold results only: two runs give byte-identical verdict files. How the run went
(candidate seconds, cache hits, sandbox errors) is returned apart, for logs/execute.json.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from daj.data.schema import CANDIDATE_FIELDS
from daj.errors import DajError
from daj.io import iter_jsonl
from sandbox.inside.protocol import MISSING, SANDBOX_ERROR
from sandbox.pool import SandboxPool

log = logging.getLogger(__name__)


def read_candidates(directory: str | Path, problems: dict[str, dict],
                    policies: list[str] | None = None) -> dict[str, list[dict]]:
    """Candidates grouped by policy, each checked against the problem list.

    With `policies`, only <directory>/<name>.jsonl of those policies is read (each must exist);
    without, every *.jsonl file."""
    if policies is None:
        files = sorted(Path(directory).glob("*.jsonl"))
        if not files:
            raise DajError("no candidate files (*.jsonl)", path=str(directory))
    else:
        files = [Path(directory) / f"{name}.jsonl" for name in policies]
        for path in files:
            if not path.is_file():
                raise DajError("no candidate file for this policy (run the sample stage)", path=str(path))
    by_policy: dict[str, list[dict]] = defaultdict(list)
    for path in files:
        for lineno, row in iter_jsonl(path, required=CANDIDATE_FIELDS):
            if row["problem_id"] not in problems:
                raise DajError(f"unknown problem {row['problem_id']!r}", path=str(path), line=lineno,
                               field="problem_id")
            if not isinstance(row["code"], str):
                raise DajError("code must be a string", path=str(path), line=lineno, field="code")
            imported = row.get("imported_passed")
            if imported is not None and not isinstance(imported, bool):
                raise DajError("imported_passed must be true, false or null", path=str(path),
                               line=lineno, field="imported_passed")
            by_policy[str(row["policy"])].append(row)
    return dict(by_policy)


def verdict_rows(candidates: list[dict], verdicts: list[dict], source: str) -> list[dict]:
    """data/verdicts rows: the candidate's keys, the verdict later stages use (`passed`: the
    sandbox's, or with source "imported" the pool's own where it has one) and the sandbox's fields."""
    rows = []
    for cand, v in zip(candidates, verdicts, strict=True):
        imported = cand.get("imported_passed")
        use_imported = source == "imported" and imported is not None
        row = {"problem_id": cand["problem_id"], "policy": cand["policy"], "index": cand["index"],
               "passed": bool(imported) if use_imported else v["passed"],
               "public_passed": v["public_passed"], "status": v["status"],
               "tests_passed": v["tests_passed"], "tests_total": v["tests_total"],
               "sandbox_passed": v["passed"], "verdict_source": "imported" if use_imported else "sandbox",
               "outcomes": v["outcomes"], "error": v["error"]}
        if imported is not None:
            row["imported_passed"] = imported
        rows.append(row)
    return rows


def policy_metrics(rows: list[dict]) -> dict:
    """metrics/execute.json for one policy (results only; sandbox errors counted under `status`)."""
    m = {"candidates": len(rows), "passed": sum(r["passed"] for r in rows),
         "public_passed": sum(r["public_passed"] for r in rows),
         "sandbox_passed": sum(r["sandbox_passed"] for r in rows),
         "status": dict(sorted(Counter(r["status"] for r in rows).items())),
         "missing_dependency": sum(r["status"] == MISSING for r in rows)}
    with_imported = [r for r in rows if "imported_passed" in r]
    if with_imported:
        m["imported"] = len(with_imported)
        m["imported_passed"] = sum(r["imported_passed"] for r in with_imported)
        m["agreement"] = sum(r["imported_passed"] == r["sandbox_passed"] for r in with_imported)
        m["imported_pass_kept"] = sum(r["imported_passed"] and r["sandbox_passed"] for r in with_imported)
    return m


@dataclass
class Judged:
    """Verdict rows and metrics per policy (results), and how the run went (for logs/)."""

    rows: dict[str, list[dict]] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)
    run: dict[str, dict] = field(default_factory=dict)


def judge_policies(pool: SandboxPool, problems: dict[str, dict], by_policy: dict[str, list[dict]],
                   source: str) -> Judged:
    """Judge every policy's candidates on `pool`; a candidate that broke the sandbox is named."""
    out = Judged()
    for policy, cands in sorted(by_policy.items()):
        before = dict(pool.stats)
        verdicts = pool.check([(problems[c["problem_id"]], c["code"]) for c in cands], desc=policy)
        rows = verdict_rows(cands, verdicts, source)
        for row in rows:
            if row["status"] == SANDBOX_ERROR:
                log.warning("policy %s, problem %s, candidate %s: %s", row["policy"], row["problem_id"],
                            row["index"], row["error"])
        out.rows[policy] = rows
        out.metrics[policy] = {**policy_metrics(rows), "backend": pool.backend, "verdict_source": source}
        out.run[policy] = {"seconds": round(pool.stats["candidate_seconds"] - before["candidate_seconds"], 2),
                           "cache_hits": pool.stats["cache_hits"] - before["cache_hits"],
                           "sandbox_errors": pool.stats[SANDBOX_ERROR] - before[SANDBOX_ERROR]}
        log.info("%s: %d/%d passed (%s)", policy, out.metrics[policy]["passed"], len(cands),
                 out.metrics[policy]["status"])
    return out

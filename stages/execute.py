"""execute: judge every candidate in the sandbox; write data/verdicts/<policy>.jsonl, metrics/execute.json.

Reads data/problems.jsonl and data/candidates/<policy>.jsonl for each policy named in params
`policies` (problem_id, policy, index, code, optional imported_passed); a file of a policy no
longer in params is ignored and gets no verdict file. Ctrl-C stops the stage within seconds and
writes nothing (only complete verdicts enter the verdict cache). `execute.verdict_source` picks what goes in `passed`: the sandbox verdict, or the
verdict imported with the pool (where a row has none, the sandbox verdict is used and counted).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path

from daj.config import ParamsConfig
from daj.data.schema import CANDIDATE_FIELDS
from daj.errors import DajError
from daj.io import atomic_dir, iter_jsonl, write_json, write_jsonl
from daj.runlog import record
from sandbox.config import SandboxConfig
from sandbox.pool import SandboxPool

PROBLEMS = "data/problems.jsonl"
CANDIDATES = "data/candidates"
VERDICTS = "data/verdicts"
METRICS = "metrics/execute.json"
log = logging.getLogger(__name__)


def read_candidates(directory: str | Path, problems: dict[str, dict],
                    policies: list[str] | None = None) -> dict[str, list[dict]]:
    """Candidates grouped by policy, each checked against the problem list.

    With `policies`, only data/candidates/<name>.jsonl of those policies is read (each must exist);
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
    rows = []
    for cand, v in zip(candidates, verdicts, strict=True):
        imported = cand.get("imported_passed")
        use_imported = source == "imported" and imported is not None
        row = {"problem_id": cand["problem_id"], "policy": cand["policy"], "index": cand["index"],
               "passed": bool(imported) if use_imported else v["passed"],
               "public_passed": v["public_passed"], "status": v["status"],
               "tests_passed": v["tests_passed"], "tests_total": v["tests_total"],
               "seconds": round(v["seconds"], 4), "sandbox_passed": v["passed"],
               "verdict_source": "imported" if use_imported else "sandbox",
               "outcomes": v["outcomes"], "error": v["error"]}
        if imported is not None:
            row["imported_passed"] = imported
        rows.append(row)
    return rows


def policy_metrics(rows: list[dict]) -> dict:
    m = {"candidates": len(rows), "passed": sum(r["passed"] for r in rows),
         "public_passed": sum(r["public_passed"] for r in rows),
         "sandbox_passed": sum(r["sandbox_passed"] for r in rows),
         "status": dict(sorted(Counter(r["status"] for r in rows).items())),
         "missing_dependency": sum(r["status"] == "missing_dependency" for r in rows)}
    with_imported = [r for r in rows if "imported_passed" in r]
    if with_imported:
        m["imported"] = len(with_imported)
        m["imported_passed"] = sum(r["imported_passed"] for r in with_imported)
        m["agreement"] = sum(r["imported_passed"] == r["sandbox_passed"] for r in with_imported)
        m["imported_pass_kept"] = sum(r["imported_passed"] and r["sandbox_passed"] for r in with_imported)
    return m


def main(params: ParamsConfig) -> None:
    source = params.execute.verdict_source
    config = SandboxConfig.from_params({**params.execute.model_dump(), "cache_dir": params.caches.verdicts})
    problems = {row["id"]: row for _, row in iter_jsonl(PROBLEMS, required=("id", "tests"))}
    by_policy = read_candidates(CANDIDATES, problems, [p.name for p in params.policies])
    metrics: dict = {}
    runs: dict = {}  # candidate seconds and cache hits: logs/execute.json, not results
    outputs: dict[str, list[dict]] = {}
    with SandboxPool(config) as runner:
        log.info("backend: %s, %d workers", runner.backend, config.n_workers())
        for policy, cands in sorted(by_policy.items()):
            hits = runner.cache_hits
            verdicts = runner.check([(problems[c["problem_id"]], c["code"]) for c in cands], desc=policy)
            outputs[policy] = verdict_rows(cands, verdicts, source)
            metrics[policy] = policy_metrics(outputs[policy])
            metrics[policy].update(backend=runner.backend, verdict_source=source)
            runs[policy] = {"seconds": round(sum(r["seconds"] for r in outputs[policy]), 2),
                            "cache_hits": runner.cache_hits - hits}
            log.info("%s: %d/%d passed (%s)", policy, metrics[policy]["passed"], len(cands),
                     metrics[policy]["status"])
    with atomic_dir(VERDICTS) as tmp:
        for policy, rows in outputs.items():
            write_jsonl(tmp / f"{policy}.jsonl", rows)
    write_json(METRICS, metrics)
    record("execute", runs)


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("execute", main)

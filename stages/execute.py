"""execute: judge every candidate in the sandbox; write data/verdicts/<policy>.jsonl, metrics/execute.json.

Reads data/problems.jsonl and data/candidates/<policy>.jsonl for each policy named in params
`policies` (problem_id, policy, index, code, optional imported_passed); a file of a policy no
longer in params is ignored and gets no verdict file. Ctrl-C stops the stage within seconds and
writes nothing (only complete verdicts enter the verdict cache, caches.verdicts).
`execute.verdict_source` picks what goes in `passed`: the sandbox verdict, or the verdict imported
with the pool (where a row has none, the sandbox verdict is used and counted). Candidate seconds,
cache hits and sandbox errors go to logs/execute.json. With `execute.cluster` set, the candidates are
judged on the nodes of a Ray cluster (sandbox.cluster), with the same verdicts.
"""

from __future__ import annotations

import logging

from daj import artifacts
from daj.config import ParamsConfig
from daj.io import atomic_dir, iter_jsonl, write_json, write_jsonl
from daj.runlog import record
from sandbox.cluster import RayPool
from sandbox.pool import SandboxPool
from sandbox.verdicts import judge_policies, read_candidates

PROBLEMS, CANDIDATES, VERDICTS = artifacts.PROBLEMS, artifacts.CANDIDATES, artifacts.VERDICTS
METRICS = artifacts.metrics("execute")
log = logging.getLogger(__name__)


def main(params: ParamsConfig) -> None:
    problems = {row["id"]: row for _, row in iter_jsonl(PROBLEMS, required=("id", "tests"))}
    by_policy = read_candidates(CANDIDATES, problems, [p.name for p in params.policies])
    pool_type = SandboxPool if params.execute.cluster is None else RayPool  # execute.cluster: docs/scale.md
    with pool_type(params.execute, cache_dir=params.caches.verdicts) as pool:
        log.info("backend: %s, %d workers", pool.backend, pool.workers)
        judged = judge_policies(pool, problems, by_policy, params.execute.verdict_source)
    with atomic_dir(VERDICTS) as tmp:
        for policy, rows in judged.rows.items():
            write_jsonl(tmp / f"{policy}.jsonl", rows)
    write_json(METRICS, judged.metrics)
    record("execute", judged.run)


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("execute", main)

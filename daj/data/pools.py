"""Candidate pools: a policy's candidates joined with their verdicts, per problem.

The one way the later stages (pairs, bon, pairwise) read `data/candidates` and `data/verdicts`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daj import artifacts
from daj.errors import DajError
from daj.io import iter_jsonl


@dataclass(frozen=True)
class PoolCandidate:
    """One candidate program with its verdicts."""

    policy: str
    index: int
    code: str
    passed: bool
    public_passed: bool


def load_pool(candidates_path: str | Path, verdicts_path: str | Path, policy: str,
              problem_ids: Iterable[str] | None = None) -> dict[str, list[PoolCandidate]]:
    """problem_id -> candidates (sorted by index) of one policy, joined with their verdicts.

    Every candidate of a wanted problem needs a verdict row with `passed` and `public_passed` (bools).
    """
    wanted = set(problem_ids) if problem_ids is not None else None
    verdicts: dict[tuple[str, int], tuple[bool, bool]] = {}
    for line, row in iter_jsonl(verdicts_path, required=("problem_id", "index", "passed", "public_passed")):
        if wanted is not None and row["problem_id"] not in wanted:
            continue
        for key in ("passed", "public_passed"):
            if not isinstance(row[key], bool):
                raise DajError(f"expected a boolean, got {row[key]!r}", path=str(verdicts_path), line=line, field=key)
        if not isinstance(row["index"], int) or isinstance(row["index"], bool):
            raise DajError(f"expected an integer, got {row['index']!r}", path=str(verdicts_path), line=line,
                           field="index")
        verdicts[(row["problem_id"], row["index"])] = (row["passed"], row["public_passed"])
    pools: dict[str, list[PoolCandidate]] = defaultdict(list)
    for line, row in iter_jsonl(candidates_path, required=("problem_id", "index", "code")):
        pid = row["problem_id"]
        if wanted is not None and pid not in wanted:
            continue
        if not isinstance(row["index"], int) or isinstance(row["index"], bool):
            raise DajError(f"expected an integer, got {row['index']!r}", path=str(candidates_path), line=line,
                           field="index")
        key = (pid, row["index"])
        if key not in verdicts:
            raise DajError(f"no verdict for candidate {row['index']} of {pid} in {verdicts_path}",
                           path=str(candidates_path), line=line, field="index")
        passed, public = verdicts[key]
        pools[pid].append(PoolCandidate(policy, row["index"], str(row["code"]), passed, public))
    for pid, cands in pools.items():
        cands.sort(key=lambda c: c.index)
        dup = [i for i, n in Counter(c.index for c in cands).items() if n > 1]
        if dup:
            raise DajError(f"duplicate candidate index {dup[0]} for {pid}", path=str(candidates_path), field="index")
    return dict(pools)


def load_pools(policies: list[str], problem_ids: list[str], candidates_dir: str | Path = artifacts.CANDIDATES,
               verdicts_dir: str | Path = artifacts.VERDICTS) -> dict[str, list[PoolCandidate]]:
    """The candidates of several policies pooled per problem (policy order, then index order)."""
    pooled: dict[str, list[PoolCandidate]] = defaultdict(list)
    for policy in policies:
        pools = load_pool(Path(candidates_dir) / f"{policy}.jsonl", Path(verdicts_dir) / f"{policy}.jsonl",
                          policy, problem_ids)
        for pid, cands in pools.items():
            pooled[pid].extend(cands)
    return dict(pooled)

"""The `file` backend: import pre-sampled candidate pools.

Two formats are read:
  - LiveCodeBench runner output `*_eval_all.json[.gz]`: one JSON list, one object per problem with
    `question_id`, `code_list` (extracted code per sample), optionally `graded_list` (the official
    verdict per sample, kept as `imported_passed`) and `output_list` (the raw model output).
  - our own candidates JSONL (`data/candidates/<policy>.jsonl`): rows with problem_id, index, code
    and optionally imported_passed.

A policy's `path` may be one file or a list of files; with a list the pools are combined per
problem and the candidate index follows file order (file 1's samples first, then file 2's, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from daj.errors import DajError
from daj.io import iter_jsonl, read_json

PoolPath = str | os.PathLike | Sequence[str | os.PathLike]


def lcb_problem_id(question_id: object) -> str:
    """Our id for an LCB question id (the same rule as daj.data.lcb.parse_lcb_row)."""
    return f"lcb/{question_id}"


def _is_lcb_eval_all(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".json", ".json.gz")) and not name.endswith((".jsonl", ".jsonl.gz"))


def read_lcb_eval_all(path: str | os.PathLike) -> list[dict]:
    """Read an LCB `*_eval_all.json[.gz]` file into candidate rows.

    Each row: problem_id ("lcb/<question_id>"), index (sample number within the problem), code,
    imported_passed (bool, or None when the file has no `graded_list`), and `raw_output` when the
    file has `output_list`. Rows come in file order.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DajError(f"expected a JSON list of problems, got {type(data).__name__}", path=str(path))
    rows: list[dict] = []
    seen: set[str] = set()
    for i, rec in enumerate(data):
        where = f"record {i}"
        if not isinstance(rec, dict):
            raise DajError(f"{where}: expected a JSON object", path=str(path))
        for key in ("question_id", "code_list"):
            if key not in rec:
                raise DajError(f"{where}: missing required field", path=str(path), field=key)
        pid = lcb_problem_id(rec["question_id"])
        if pid in seen:
            raise DajError(f"{where}: duplicate question_id {rec['question_id']!r}", path=str(path),
                           field="question_id")
        seen.add(pid)
        codes = rec["code_list"]
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            raise DajError(f"{where} ({pid}): expected a list of strings", path=str(path), field="code_list")
        graded = rec.get("graded_list")
        if graded is not None:
            if not isinstance(graded, list) or len(graded) != len(codes):
                raise DajError(f"{where} ({pid}): expected a list of {len(codes)} verdicts",
                               path=str(path), field="graded_list")
            if not all(isinstance(g, bool) for g in graded):
                raise DajError(f"{where} ({pid}): verdicts must be true/false", path=str(path),
                               field="graded_list")
        outputs = rec.get("output_list")
        if outputs is not None and (not isinstance(outputs, list) or len(outputs) != len(codes)):
            raise DajError(f"{where} ({pid}): expected a list of {len(codes)} outputs",
                           path=str(path), field="output_list")
        for j, code in enumerate(codes):
            row = {"problem_id": pid, "index": j, "code": code,
                   "imported_passed": graded[j] if graded is not None else None}
            if outputs is not None:
                row["raw_output"] = outputs[j]
            rows.append(row)
    return rows


def read_candidates_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read our own candidates JSONL (rows keep their fields; read_pool renumbers indexes)."""
    return [dict(row) for _, row in iter_jsonl(path, required=("problem_id", "code"))]


def read_pool_file(path: str | os.PathLike) -> list[dict]:
    """Read one pool file of either format (chosen by the file name)."""
    path = Path(path)
    if _is_lcb_eval_all(path):
        return read_lcb_eval_all(path)
    if path.name.lower().endswith((".jsonl", ".jsonl.gz")):
        return read_candidates_jsonl(path)
    raise DajError("unknown pool format: expected *_eval_all.json[.gz] or *.jsonl[.gz]", path=str(path))


def _paths(path: PoolPath) -> list[Path]:
    if isinstance(path, str | os.PathLike):
        return [Path(path)]
    if isinstance(path, Sequence) and path and all(isinstance(p, str | os.PathLike) for p in path):
        return [Path(p) for p in path]
    raise DajError(f"a file policy's path must be a string or a non-empty list of strings, got {path!r}",
                   field="path")


def read_pool(path: PoolPath) -> dict[str, list[dict]]:
    """Read one or several pool files and combine them per problem.

    Returns {problem_id: [candidate, ...]} with `index` renumbered 0.. per problem in file order
    (and `source` = the file each candidate came from). Problems keep the order of first sight.
    """
    pool: dict[str, list[dict]] = {}
    for p in _paths(path):
        for row in read_pool_file(p):
            cands = pool.setdefault(row["problem_id"], [])
            cand = {k: v for k, v in row.items() if k not in ("policy", "index")}
            cand["index"] = len(cands)
            cand["source"] = p.name
            cands.append(cand)
    return pool


def pool_candidates(pool: dict[str, list[dict]], problem_ids: Iterable[str], policy: str,
                    n: int | None = None) -> tuple[dict[str, list[dict]], list[str]]:
    """Candidates of `policy` for the given problems (at most `n` each when given).

    Returns ({problem_id: rows in the candidates.jsonl format}, [problem ids missing from the pool]).
    """
    found: dict[str, list[dict]] = {}
    missing: list[str] = []
    for pid in problem_ids:
        cands = pool.get(pid)
        if not cands:
            missing.append(pid)
            continue
        chosen = cands if n is None else cands[:n]
        found[pid] = [{"problem_id": pid, "policy": policy, "index": c["index"], "code": c["code"],
                       **{k: v for k, v in c.items() if k not in ("problem_id", "index", "code")}}
                      for c in chosen]
    return found, missing

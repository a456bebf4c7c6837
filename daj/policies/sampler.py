"""Sample one policy's candidates for a list of problems, resumably.

A policy (daj.config.PolicyConfig) is {name, backend, ...}: backend `file` (path: one pool file or a list), `mutants`
(n), or a generative engine (`hf`, `vllm`, `openai`: model, adapter and backend options, sampling
settings overriding the `sampling:` defaults). `problems: N` keeps the first N problems.

Resuming: problems are processed in chunks at fixed positions (chunk k = problems k*B .. k*B+B-1).
After each chunk its rows and a chunk marker are appended to `<work_dir>/<policy>.partial.jsonl`
and flushed. A rerun with the same fingerprint (policy, sampling defaults, seed, problem ids, engines code) keeps
the completed chunks, drops a torn tail and continues; chunks are identical to an uninterrupted run
because every chunk is generated from the same inputs and seeds. At the end the rows are written
atomically to the output and a done marker holding the fingerprint and the statistics is saved, so
a completed policy is not redone either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from daj.config import PolicyConfig, SamplingConfig
from daj.engines.base import SamplingParams
from daj.engines.registry import make_engine as registry_make_engine
from daj.errors import DajError
from daj.io import write_json, write_jsonl
from daj.policies.extract import extract_code
from daj.policies.file import pool_candidates, read_pool
from daj.policies.mutants import problem_mutants
from daj.policies.prompts import policy_prompt

log = logging.getLogger(__name__)
DEFAULT_CHUNK = {"mutants": 16}  # problems per resumable chunk (engines: 8)


def code_version() -> str:
    """Hash of the policies' and engines' source: changed code must not reuse old partial or done outputs."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for f in sorted([*here.glob("*.py"), *(here.parent / "engines").glob("*.py")]):
        h.update(f.parent.name.encode() + b"/" + f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def sample_identity(policy: PolicyConfig, sampling: SamplingParams, problem_ids: list[str]) -> str:
    """What a policy's output depends on: its settings, its decoding and seed, the problems and the code."""
    blob = json.dumps([policy.model_dump(mode="json", exclude_unset=True), sampling.model_dump(mode="json"),
                       problem_ids, code_version()], sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class _Partial:
    """The append-only partial file: a header line, then rows and chunk markers."""

    def __init__(self, path: Path, fp: str):
        self.path, self.fp = path, fp
        self.chunks: dict[int, dict] = {}  # chunk number -> {"rows": [...], "stats": {...}}
        self._load()
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if fresh:
            self._write({"fingerprint": fp})

    def _load(self) -> None:
        if not self.path.exists():
            return
        rows: list[dict] = []
        keep = 0  # bytes of the file up to the last complete chunk
        header_ok = False
        with open(self.path, "rb") as fh:
            offset = 0
            for raw in fh:
                offset += len(raw)
                try:
                    rec = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    break  # a torn last line from a killed run
                if not raw.endswith(b"\n"):
                    break
                if not header_ok:
                    header_ok = rec.get("fingerprint") == self.fp
                    if not header_ok:
                        break
                    keep = offset
                elif "_chunk_done" in rec:
                    self.chunks[rec["_chunk_done"]] = {"rows": rows, "stats": rec.get("stats", {})}
                    rows = []
                    keep = offset
                else:
                    rows.append(rec)
        if not header_ok:
            log.info("%s: different settings or unreadable; starting over", self.path)
            self.path.unlink()
            self.chunks = {}
            return
        with open(self.path, "r+b") as fh:
            fh.truncate(keep)

    def _write(self, rec: dict) -> None:
        self.fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def add(self, k: int, rows: list[dict], stats: dict) -> None:
        for row in rows:
            self._write(row)
        self._write({"_chunk_done": k, "stats": stats})
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.chunks[k] = {"rows": rows, "stats": stats}

    def close(self) -> None:
        self.fh.close()


def _file_rows(policy: PolicyConfig, problems: list[dict]) -> tuple[dict[str, list[dict]], list[str]]:
    pool = read_pool(policy.path)
    return pool_candidates(pool, [p["id"] for p in problems], policy.name, policy.n)


def _mutant_rows(policy: PolicyConfig, problem: dict, sp: SamplingParams) -> list[dict]:
    return [{"problem_id": problem["id"], "policy": policy.name, **c}
            for c in problem_mutants(problem, sp.n, sp.seed)]


def sample_policy(policy: PolicyConfig, problems: list[dict], defaults: SamplingConfig, seed: int,
                  out: str | Path, work_dir: str | Path, where: str | None = None,
                  make_engine: Callable[[dict], object] | None = None) -> tuple[dict, dict]:
    """Write `out` (candidates JSONL) for one policy; return (statistics, how the run went).

    The statistics depend only on the settings and the problems (metrics/sample/<policy>.json);
    wall times, token rates and whether chunks were resumed or reused go to the run record."""
    name, backend = policy.name, policy.backend
    if policy.problems:
        problems = problems[:policy.problems]
    ids = [p["id"] for p in problems]
    sp = SamplingParams(**policy.sampling(defaults).model_dump(), seed=seed if policy.seed is None else policy.seed)
    fp = sample_identity(policy, sp, ids)
    work = Path(work_dir)
    done_path = work / f"{name}.done.json"
    out = Path(out)
    if out.exists() and done_path.exists():
        done = json.loads(done_path.read_text(encoding="utf-8"))
        if done.get("fingerprint") == fp and "run" in done:
            log.info("policy %s: already complete (%s)", name, out)
            return done["stats"], {**done["run"], "reused": True}

    start = time.perf_counter()
    stats: dict = {"backend": backend, "problems": len(problems)}
    run: dict = {"reused": False}
    if backend == "file":
        found, missing = _file_rows(policy, problems)
        rows = [r for pid in ids if pid in found for r in found[pid]]
        if missing:
            log.warning("policy %s: %d of %d problems are missing from the pool (first: %s)", name,
                        len(missing), len(ids), ", ".join(missing[:5]))
        passed = [r["imported_passed"] for r in rows if r.get("imported_passed") is not None]
        stats.update(missing=len(missing), missing_ids=missing[:50], imported_verdicts=len(passed),
                     imported_passed=sum(passed))
        if not rows:
            raise DajError(f"policy {name!r}: the pool has none of the {len(ids)} problems", path=where,
                           field="policies")
    else:
        rows, chunk_stats, chunk_run = _sample_chunks(policy, problems, sp, fp, work, make_engine)
        stats.update(chunk_stats)
        run.update(chunk_run)
        stats["missing"] = 0
    stats["candidates"] = len(rows)
    codes: dict[str, list[str]] = {}
    for r in rows:
        codes.setdefault(r["problem_id"], []).append(r["code"])
    per = {pid: len(c) for pid, c in codes.items()}
    stats["candidates_per_problem"] = dict(sorted(Counter(per.values()).items()))
    stats["distinct_per_problem"] = dict(sorted(Counter(len(set(c)) for c in codes.values()).items()))
    if backend == "mutants":
        stats["mutations"] = dict(sorted(Counter(str(r["mutation"]) for r in rows).items()))
    run["seconds"] = round(time.perf_counter() - start, 3)  # this run's wall time
    write_jsonl(out, rows)
    write_json(done_path, {"fingerprint": fp, "stats": stats, "run": run})
    partial = work / f"{name}.partial.jsonl"
    if partial.exists():
        partial.unlink()
    log.info("policy %s: %d candidates for %d problems -> %s", name, len(rows), len(per), out)
    return stats, run


def _sample_chunks(policy: PolicyConfig, problems: list[dict], sp: SamplingParams, fp: str, work: Path,
                   make_engine: Callable[[dict], object] | None) -> tuple[list[dict], dict, dict]:
    name, backend = policy.name, policy.backend
    chunk = policy.chunk or DEFAULT_CHUNK.get(backend, 8)
    partial = _Partial(work / f"{name}.partial.jsonl", fp)
    n_chunks = (len(problems) + chunk - 1) // chunk
    resumed = sum(len(problems[k * chunk:(k + 1) * chunk]) for k in partial.chunks)
    if resumed:
        log.info("policy %s: resuming, %d of %d problems already done", name, resumed, len(problems))
    engine = None
    try:
        with tqdm(total=len(problems), desc=f"sample {name}", unit="problem", initial=resumed) as bar:
            for k in range(n_chunks):
                if k in partial.chunks:
                    continue
                batch = problems[k * chunk:(k + 1) * chunk]
                t0 = time.perf_counter()
                if backend == "mutants":
                    rows = [r for p in batch for r in _mutant_rows(policy, p, sp)]
                    tokens = 0
                else:
                    if engine is None:
                        engine = (make_engine or registry_make_engine)(policy.engine_spec())
                    rows, tokens = _generate(engine, policy, batch, sp)
                partial.add(k, rows, {"completion_tokens": tokens, "seconds": time.perf_counter() - t0})
                bar.update(len(batch))
    finally:
        partial.close()
        if engine is not None:
            engine.close()
    rows = [r for k in range(n_chunks) for r in partial.chunks[k]["rows"]]
    tokens = sum(c["stats"].get("completion_tokens", 0) for c in partial.chunks.values())
    gen_seconds = sum(c["stats"].get("seconds", 0.0) for c in partial.chunks.values())
    stats: dict = {"chunks": n_chunks}
    run: dict = {"resumed_problems": resumed}
    if backend != "mutants":
        stats.update(completion_tokens=tokens, finish_reasons=dict(sorted(Counter(r["finish_reason"] for r in rows).items())),
                     sampling=sp.to_dict())
        run.update(generation_seconds=round(gen_seconds, 3),
                   tokens_per_s=round(tokens / gen_seconds, 2) if gen_seconds > 0 else None)
    return rows, stats, run


def _generate(engine, policy: PolicyConfig, batch: list[dict], sp: SamplingParams) -> tuple[list[dict], int]:
    prompts = [policy_prompt(p) for p in batch]
    outs = engine.generate(prompts, sp)
    rows, tokens = [], 0
    for problem, prompt, comps in zip(batch, prompts, outs, strict=True):
        for i, c in enumerate(comps):
            tokens += c.completion_tokens
            rows.append({"problem_id": problem["id"], "policy": policy.name, "index": i,
                         "code": extract_code(c.text, problem), "prompt": prompt, "response": c.text,
                         "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
                         "completion_tokens": c.completion_tokens})
    return rows, tokens

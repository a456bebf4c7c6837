"""Pick one candidate per problem with the judge, on any pool, without verdicts: the tool's use after training.

    python -m daj.select --problems problems.jsonl --candidates pool.jsonl [more pools] --out picks.jsonl \\
        [--method judge|swap|hybrid|public_tests] [--adapter models/judge] [--rounds R] [--seed S] \\
        [--params params.yaml]

Inputs:
- problems: JSON Lines, one problem per line with `id` and `statement` (or `prompt`); optional `title`,
  `platform`, `difficulty`, `starter_code` and `tests` ({type, public: [...], ...}, the data schema of
  docs/data.md): what the judge prompt shows, and the public tests of hybrid and public_tests. A split
  file of the pipeline (data/splits/test.jsonl) or data/problems.jsonl works as it is.
- candidates: our candidates JSONL (`problem_id`, `code`) or LiveCodeBench `*_eval_all.json[.gz]`
  (daj.policies.file). Several files are pooled per problem; candidates are numbered 0.. per problem in
  file order (`index` in the output), and `source` names the file.

Methods (the selection code of daj.eval.bon, with the settings of the typed params):
- judge         the paper's tally: R rounds of pairwise votes (bon.rounds, bon.share_votes)
- swap          the same, every drawn pair judged in both orders and combined (daj.judge.swap)
- hybrid        the public tests first, in the sandbox (execute.*): the vote among the candidates
                that pass them (all when none does; no vote when one does)
- public_tests  a seeded uniform pick among the candidates that pass the public tests (all when none)

The judge is judge.* of the params with `--adapter` (default: models/judge when that directory
holds an adapter, else judge.adapter), its calls cached in caches.judge. Seeds and vote draws are
those of the bon stage (seed, tag "bon", problem id), so on the same problems, pool, judge and
params the judge method picks what bon's judge method picks.

Output (written atomically): one JSON line per problem, in the problems file's order:
  problem_id, method, picked (the index, null without candidates), source, code (of the pick),
  n_candidates, voters (indices voted among), votes (per voter), public_passed (hybrid and
  public_tests: per candidate), judge_prompts (distinct prompts asked) and judge_responses (rounds
  answered). Model calls and cache hits of the run go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from daj.artifacts import trained_adapter
from daj.config import ParamsConfig
from daj.data.pools import PoolCandidate
from daj.errors import DajError
from daj.hashing import stable_seed
from daj.io import iter_jsonl, write_jsonl

METHODS = ("judge", "swap", "hybrid", "public_tests")
log = logging.getLogger("daj.select")


def read_problems(path: str | Path) -> list[dict]:
    """The problems file: `id` and `statement` (or `prompt`) on every line, ids unique."""
    problems, seen = [], set()
    for line, row in iter_jsonl(path, required=("id",)):
        if not isinstance(row["id"], str) or not row["id"]:
            raise DajError("expected a non-empty string", path=str(path), line=line, field="id")
        if row["id"] in seen:
            raise DajError(f"duplicate problem id {row['id']!r}", path=str(path), line=line, field="id")
        if not isinstance(row.get("statement") or row.get("prompt"), str):
            raise DajError("a problem needs its text in `statement` (or `prompt`)", path=str(path), line=line,
                           field="statement")
        tests = row.get("tests")
        if tests is not None and not isinstance(tests, dict):
            raise DajError("expected an object {type, public: [...]}", path=str(path), line=line, field="tests")
        seen.add(row["id"])
        problems.append(row)
    return problems


def read_candidates(paths: Sequence[str | Path], problem_ids: set[str]) -> dict[str, list[dict]]:
    """problem id -> candidates ({index, code, source}) pooled from `paths`; others are counted and dropped."""
    from daj.policies.file import read_pool

    pool = read_pool([str(p) for p in paths])
    unknown = sorted(set(pool) - problem_ids)
    if unknown:
        log.warning("%d problems of the candidates are not in the problems file (ignored), e.g. %s",
                    len(unknown), unknown[0])
    return {pid: cands for pid, cands in pool.items() if pid in problem_ids}


def public_results(problems: list[dict], pool: dict[str, list[dict]], config: ParamsConfig) -> dict[tuple, bool]:
    """(problem id, index) -> whether the candidate passes its problem's public tests, run in the sandbox
    (execute.*, verdicts cached in caches.verdicts). Private tests are left out: no verdict is made.
    A problem without tests passes vacuously."""
    from sandbox.pool import SandboxPool  # the sandbox's one entry point

    jobs, keys, out = [], [], {}
    for problem in problems:
        tests = problem.get("tests")
        for c in pool.get(problem["id"], []):
            if not tests or not tests.get("public"):
                out[(problem["id"], c["index"])] = True
                continue
            public_only = {**problem, "tests": {**tests, "private": [], "code": ""}}
            jobs.append((public_only, c["code"]))
            keys.append((problem["id"], c["index"]))
    if jobs:
        pool_ = SandboxPool(config.execute, cache_dir=config.caches.verdicts)
        try:
            verdicts = pool_.check(jobs, desc="public tests")
        finally:
            pool_.close()
        out.update({key: bool(v["public_passed"]) for key, v in zip(keys, verdicts, strict=True)})
    return out


def select(problems: list[dict], pool: dict[str, list[dict]], config: ParamsConfig, method: str, runner=None,
           public: dict[tuple, bool] | None = None) -> tuple[list[dict], object]:
    """(one output row per problem, the judge's CallStats) (see the module docstring); `runner` (a
    JudgeRunner) for the judge methods, `public` (public_results) for hybrid and public_tests."""
    from daj.eval.bon import hybrid_pool, judge_vote
    from daj.judge.runner import CallStats

    bon, rows, total = config.bon, [], CallStats()
    for problem in problems:
        pid = problem["id"]
        found = {c["index"]: c for c in pool.get(pid, [])}
        # verdicts are unknown here: `passed` is never read by the selection code
        cands = [PoolCandidate("select", i, c["code"], False, public[(pid, i)] if public is not None else False)
                 for i, c in found.items()]
        voters = hybrid_pool(cands) if method in ("hybrid", "public_tests") else cands
        stats, votes, picked = CallStats(), [], None
        if method == "public_tests" and voters:
            rng = np.random.default_rng(stable_seed(config.seed, "select", "public_tests", pid))
            picked = voters[int(rng.integers(len(voters)))]
        elif len(voters) == 1:
            picked = voters[0]
        elif voters:
            result, stats = judge_vote(runner, problem, voters, bon.rounds, config.seed, share_votes=bon.share_votes,
                                       swap=method == "swap")
            picked, votes = voters[result.winner], result.votes
        row = {"problem_id": pid, "method": method, "picked": None if picked is None else picked.index,
               "source": None if picked is None else found[picked.index].get("source"),
               "code": None if picked is None else picked.code, "n_candidates": len(cands),
               "voters": [c.index for c in voters], "votes": votes,
               "judge_prompts": stats.model_calls + stats.cache_hits, "judge_responses": stats.responses}
        if public is not None:
            row["public_passed"] = [c.public_passed for c in cands]
        rows.append(row)
        total.add(stats)
    return rows, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m daj.select", description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", required=True, help="problems JSONL (id, statement, optional tests)")
    ap.add_argument("--candidates", required=True, nargs="+", help="candidates JSONL or LCB *_eval_all.json[.gz]")
    ap.add_argument("--out", required=True, help="output JSONL (one pick per problem)")
    ap.add_argument("--method", choices=METHODS, default="judge")
    ap.add_argument("--params", default=None, help="params file (default: params.yaml, or $DAJ_PARAMS)")
    ap.add_argument("--adapter", default=None, help="the judge's LoRA adapter (default: models/judge if there)")
    ap.add_argument("--rounds", type=int, default=None, help="voting rounds (default: bon.rounds)")
    ap.add_argument("--seed", type=int, default=None, help="base seed (default: seed)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[select] %(message)s")
    try:
        run(args)
    except DajError as e:
        print(f"error in daj.select: {e}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> None:
    """Read, check, select, write (see main for the arguments)."""
    from daj.params import load_config, params_path, with_overrides
    from stages._main import set_cpu_threads

    where = str(args.params or params_path())
    config = load_config(args.params)
    set_cpu_threads(config.cpu_threads)  # as every model stage
    overrides = {k: v for k, v in (("bon.rounds", args.rounds), ("seed", args.seed)) if v is not None}
    if overrides:
        config = with_overrides(config, **overrides)
    problems = read_problems(args.problems)
    pool = read_candidates(args.candidates, {p["id"] for p in problems})
    missing = sum(1 for p in problems if not pool.get(p["id"]))
    if missing:
        log.warning("%d of %d problems have no candidates (picked: null)", missing, len(problems))
    public = public_results(problems, pool, config) if args.method in ("hybrid", "public_tests") else None
    runner = None
    if args.method != "public_tests":
        from daj.judge.runner import build_runner

        adapter = args.adapter if args.adapter is not None else trained_adapter(config.judge.adapter)
        if adapter and not Path(adapter, "adapter_config.json").is_file():
            raise DajError("not a PEFT adapter (no adapter_config.json)", path=adapter, field="--adapter")
        runner, _ = build_runner(config.judge, adapter, config.caches.judge, progress=True, where=where)
        log.info("judge: %s%s, %s, %d rounds, seed %d", config.judge.model, f" + {adapter}" if adapter else "",
                 args.method, config.bon.rounds, config.seed)
    try:
        rows, stats = select(problems, pool, config, args.method, runner, public)
    finally:
        if runner is not None:
            runner.engine.close()
    write_jsonl(args.out, rows)
    picked = sum(r["picked"] is not None for r in rows)
    log.info("%d picks for %d problems -> %s", picked, len(rows), args.out)
    if runner is not None:
        log.info("judge: %d responses, %d prompts sent to the model, %d from the cache", stats.responses,
                 stats.model_calls, stats.cache_hits)


if __name__ == "__main__":
    sys.exit(main())

"""What does sharing votes among identical candidates change on the real pools? (issue 14 item 3)

    python -m experiments.share_votes.run [--seeds 400] [--out experiments/share_votes/results/share_votes.json]

Pools (shared/data/lcb/submissions, found through daj.paths; official verdicts on the hidden tests):
  lcb3   the O1-Mini, O1-Preview and Kimi-k1.6 one-sample pools combined: 3 candidates per problem
  n10    the unnamed model's 10 samples per problem (100 problems)
Judges (no model: deterministic functions of the prompt, so runs are exact and repeatable):
  content75  on a pass/fail pair picks the passing program with probability 0.75, else position 1
             with probability 0.6 (position-biased); the coin is a hash of (problem, the two codes in
             shown order), so the same prompt always gets the same answer and identical programs are
             treated identically
  position1  always answers position 1
For R in {3, 8} and share_votes in {false (the paper's tally), true}, every problem whose candidates
disagree is voted on with `--seeds` seeds (daj.judge.voting.pairwise_vote, the bon stage's code);
reported: pass@1 over all problems (unanimous ones score their common verdict), its standard error
over seeds, judge calls per problem, and for the paper's tally the exact expectation
(daj.eval.exact_vote) next to the simulated mean.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from daj.eval.exact_vote import expected_pass  # noqa: E402
from daj.io import write_json  # noqa: E402
from daj.judge.voting import identity_groups, pairwise_vote  # noqa: E402
from daj.paths import shared_data  # noqa: E402
from daj.policies.file import read_pool  # noqa: E402

SUB = shared_data("lcb", "submissions")
POOLS = {"lcb3": [SUB / f"submissions_v5_{m}_N1_eval_all.json.gz"
                  for m in ("O1-Mini-2024-09-12", "O1-Preview-2024-09-12", "Kimi-k1.6-IOI-high")],
         "n10": [SUB / "third_party_llm-spec-refinement_N10_eval_all.json.gz"]}


def _u(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def make_judge(kind: str, pid: str, codes: list[str], passed: list[bool]):
    """answer(a, b) -> 1 or 2 for the ordered pair (a, b)."""
    def answer(a: int, b: int) -> int:
        if kind == "position1":
            return 1
        u = _u(pid, codes[a], codes[b])
        if passed[a] != passed[b]:
            return (1 if passed[a] else 2) if u < 0.75 else (2 if passed[a] else 1)
        return 1 if u < 0.6 else 2
    return answer


def run(pool: dict[str, list[dict]], kind: str, rounds: int, share: bool, seeds: int) -> dict:
    per_seed = np.zeros(seeds)
    calls = 0
    exact = 0.0
    contested = dup = 0
    for pid, cands in pool.items():
        passed = [bool(c["imported_passed"]) for c in cands]
        codes = [c["code"] for c in cands]
        if len(set(passed)) < 2:
            per_seed += float(passed[0])
            exact += float(passed[0])
            continue
        contested += 1
        groups = identity_groups(codes)  # once per problem (the bon stage computes it once per vote)
        dup += len(set(groups)) < len(codes)
        answer = make_judge(kind, pid, codes, passed)
        table = {(a, b): answer(a, b) for a in range(len(codes)) for b in range(len(codes)) if a != b}
        q = [[None if a == b else float(table[(a, b)] == 1) for b in range(len(codes))] for a in range(len(codes))]
        exact += expected_pass(passed, q, rounds)
        for s in range(seeds):
            res = pairwise_vote(codes, rounds, lambda pairs, t=table: [t[p] for p in pairs],
                                np.random.default_rng([s, len(pid), int(_u(pid) * 2**31)]),
                                groups if share else None, share_votes=share)
            per_seed[s] += float(passed[res.winner])
            calls += res.judged
    n = len(pool)
    out = {"problems": n, "contested": contested, "contested_with_identical_programs": dup,
           "pass1": round(100 * per_seed.mean() / n, 3),
           "pass1_se": round(100 * per_seed.std(ddof=1) / n / seeds ** 0.5, 3),
           "judge_calls_per_problem": round(calls / seeds / n, 4),
           "judge_calls_per_contested_problem": round(calls / seeds / max(contested, 1), 4)}
    if not share:
        out["pass1_exact"] = round(100 * exact / n, 3)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=400)
    ap.add_argument("--out", default=str(ROOT / "experiments/share_votes/results/share_votes.json"))
    args = ap.parse_args(argv)
    start = time.perf_counter()
    report: dict = {"seeds": args.seeds, "results": {}}
    for name, paths in POOLS.items():
        pool = read_pool(paths)
        for kind in ("content75", "position1"):
            for rounds in (3, 8):
                for share in (False, True):
                    key = f"{name} {kind} R={rounds} share_votes={str(share).lower()}"
                    report["results"][key] = run(pool, kind, rounds, share, args.seeds)
                    print(key, report["results"][key], flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    write_json(args.out, report)


if __name__ == "__main__":
    main()

"""From (problem, code) to a harness job, from a harness result to a verdict, and the cache key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from daj.config import ExecuteConfig
from daj.errors import DajError
from sandbox.inside.protocol import KINDS, RUNTIME, SANDBOX_ERROR, STATUSES

INSIDE_DIR = Path(__file__).resolve().parent / "inside"  # the package mounted, alone, in the sandbox
# Bump when the harness' semantics change: it is part of the verdict cache key.
# 4: per-candidate containment, bounded parsing, sandbox_error, unittest forgeries fail
SEMANTICS_VERSION = "daj-sandbox-4"
UNITTEST_TIMEOUT_S = 241.0  # BCB: 240 s + 1 when a problem gives no tests.timeout_s


def harness_digest(inside_dir: Path = INSIDE_DIR) -> str:
    """sha256 of every file of the in-sandbox package (what a verdict depends on besides its job)."""
    h = hashlib.sha256()
    for path in sorted(inside_dir.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def build_job(problem: dict, code: str, config: ExecuteConfig, job_id: str | int = 0) -> dict:
    """The harness job judging `code` on every test of `problem` (public first, then private)."""
    where = f"{problem.get('id')}: tests"
    tests = problem.get("tests")
    if not isinstance(tests, dict) or tests.get("type") not in KINDS:
        raise DajError("missing or unknown tests.type", field=where)
    kind = tests["type"]
    public = [_case(t) for t in tests.get("public") or []]
    private = [_case(t) for t in tests.get("private") or []]
    job: dict = {"id": job_id, "kind": kind, "code": code, "memory_mb": config.memory_mb,
                 "output_mb": config.output_mb, "n_public": len(public),
                 "wall_factor": config.wall_factor, "seccomp": config.seccomp}
    if kind in ("stdin", "functional"):
        job["tests"] = public + private
        job["timeout_s"] = float(tests.get("timeout_s") or config.timeout_s)
        if kind == "functional":
            if not tests.get("func_name"):
                raise DajError("functional tests need func_name", field=where)
            job["func_name"] = tests["func_name"]
            for i, case in enumerate(job["tests"]):
                try:
                    [json.loads(line) for line in case["input"].split("\n")]
                    json.loads(case["output"])
                except ValueError:
                    raise DajError(f"test {i} is not JSON (one value per input line, one output)",
                                   field=where) from None
    elif kind == "humaneval":
        job["tests"] = public + [{"check": True}]
        job["timeout_s"] = float(tests.get("timeout_s") or config.timeout_s)
        job["test_code"], job["entry_point"] = tests.get("code") or "", tests.get("entry_point")
        # the trusted side defines the prompt's own helpers (encode_cyclic, poly) for the check
        job["prompt"] = problem.get("starter_code") or ""
    else:
        job["tests"] = []
        job["timeout_s"] = float(tests.get("timeout_s") or UNITTEST_TIMEOUT_S)
        job["test_code"] = tests.get("code") or ""
        job["memory_mb"] = config.unittest_memory_mb
        job["stack_mb"] = 10
    return job


def _case(t: dict) -> dict:
    return {"input": str(t.get("input", "")), "output": str(t.get("output", ""))}


def cache_key(job: dict, backend: str) -> str:
    """Verdict cache key: the job's code, tests and limits, the backend and the semantics version."""
    payload = {k: v for k, v in job.items() if k != "id"}
    blob = json.dumps([SEMANTICS_VERSION, backend, payload], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def summarise(job: dict, result: dict) -> dict:
    """The verdict fields of one candidate from its job and the harness result (no timings)."""
    outcomes = [o if o in STATUSES else RUNTIME for o in result.get("outcomes") or []]
    n_public = int(job.get("n_public", 0))
    if job["kind"] == "unittest":
        names = result.get("names") or []
        total = len(names) if names else len(outcomes)
        complete = bool(names) and len(outcomes) >= len(names)
    else:
        total = len(job["tests"])
        complete = len(outcomes) >= total
    passed_count = sum(o == "pass" for o in outcomes)
    passed = complete and all(o == "pass" for o in outcomes)
    if job["kind"] == "humaneval":
        # the official verdict is check(); docstring examples only decide public_passed
        # (some are wrong: HumanEval/47's median example disagrees with its canonical solution)
        passed = complete and outcomes[total - 1] == "pass"
    # vacuously true without public tests; tests stop at the first failure, so a short list fails
    public_passed = len(outcomes) >= n_public and all(o == "pass" for o in outcomes[:n_public])
    failures = [o for o in outcomes if o != "pass"]
    if passed:
        status = "pass"
    elif job["kind"] == "humaneval":
        status = outcomes[total - 1] if complete else failures[-1] if failures else RUNTIME
    elif "missing_dependency" in failures:
        status = "missing_dependency"
    else:
        status = failures[0] if failures else RUNTIME
    return {"passed": passed, "public_passed": public_passed, "status": status,
            "tests_passed": passed_count, "tests_total": total, "outcomes": outcomes,
            "error": result.get("error") or ""}


def sandbox_error(job: dict, why: str) -> dict:
    """The recorded failure of a candidate that broke the harness on every retry."""
    total = len(job.get("tests") or [])
    return {"passed": False, "public_passed": False, "status": SANDBOX_ERROR, "tests_passed": 0,
            "tests_total": total, "outcomes": [], "error": f"sandbox error: {why}"[:1000]}

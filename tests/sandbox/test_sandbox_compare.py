"""LCB output comparison rules and verdict summaries (no sandbox needed)."""

from __future__ import annotations

import pytest

from daj.config import ExecuteConfig
from daj.errors import DajError
from sandbox.inside.compare import functional_matches, stdout_matches
from sandbox.jobs import build_job, cache_key, summarise


@pytest.mark.parametrize("actual, expected, ok", [
    ("3\n", "3", True),
    ("  1 2 \n3\n\n", "1 2\n3", True),          # whole output and each line stripped
    ("1 2\n3", "1 2 3", False),                 # line counts must match
    ("1.0 2", "1 2", True),                     # tokens equal as Decimals
    ("1e2", "100", True),
    ("0.30000000000000004", "0.3", False),      # no float tolerance
    ("1  2", "1 2", True),                      # whitespace-separated tokens
    ("Yes", "yes", False),
    ("abc 1", "abc 1.0", False),                # a non-number token makes the line compare as text
    ("", "", True),
    ("1\n", "2\n", False),
])
def test_stdout_rules(actual, expected, ok):
    assert stdout_matches(actual, expected) is ok


def test_functional_rules():
    assert functional_matches((1, 2), [1, 2])   # a tuple result becomes a list
    assert not functional_matches([1, 2], [2, 1])
    assert functional_matches(1.0, 1)
    assert not functional_matches(0.30000000000000004, 0.3)

    class Broken:
        def __eq__(self, other):
            raise RuntimeError

    assert not functional_matches(Broken(), 1)


STDIN = {"id": "lcb/x", "tests": {"type": "stdin", "public": [{"input": "1", "output": "1"}],
                                  "private": [{"input": "2", "output": "2"}, {"input": "3", "output": "3"}]}}


def test_build_job_orders_public_first_and_reads_limits():
    cfg = ExecuteConfig(timeout_s=6.0, memory_mb=512)
    job = build_job(STDIN, "print(input())", cfg, job_id=7)
    assert [t["input"] for t in job["tests"]] == ["1", "2", "3"]
    assert job["n_public"] == 1 and job["timeout_s"] == 6 and job["memory_mb"] == 512 and job["id"] == 7
    bcb = {"id": "bcb/1", "tests": {"type": "unittest", "public": [], "private": [], "code": "T",
                                    "timeout_s": 241}}
    job = build_job(bcb, "x", cfg)
    assert job["timeout_s"] == 241 and job["memory_mb"] == cfg.unittest_memory_mb and job["test_code"] == "T"
    with pytest.raises(DajError, match="tests"):
        build_job({"id": "p", "tests": {"type": "nope"}}, "x", cfg)
    with pytest.raises(DajError, match="func_name"):
        build_job({"id": "p", "tests": {"type": "functional", "public": []}}, "x", cfg)
    # a problem whose functional tests are not JSON is the problem's error, before any sandbox runs
    with pytest.raises(DajError, match=r"lcb/f: tests.*test 1 is not JSON"):
        build_job({"id": "lcb/f", "tests": {"type": "functional", "func_name": "f",
                                           "public": [{"input": "1", "output": "2"}, {"input": "x", "output": "1"}]}},
                  "x", cfg)


def test_cache_key_depends_on_code_tests_and_backend():
    cfg = ExecuteConfig()
    a = build_job(STDIN, "print(1)", cfg, job_id=1)
    b = build_job(STDIN, "print(1)", cfg, job_id=2)
    assert cache_key(a, "local") == cache_key(b, "local")          # the job id is not part of it
    assert cache_key(a, "local") != cache_key(a, "docker")
    assert cache_key(a, "local") != cache_key(build_job(STDIN, "print(2)", cfg), "local")
    other = {**STDIN, "tests": {**STDIN["tests"], "private": []}}
    assert cache_key(a, "local") != cache_key(build_job(other, "print(1)", cfg), "local")


def test_summarise_public_private_and_status():
    job = build_job(STDIN, "x", ExecuteConfig())
    v = summarise(job, {"outcomes": ["pass", "pass", "pass"], "seconds": 0.5})
    assert (v["passed"], v["public_passed"], v["status"], v["tests_passed"], v["tests_total"]) == (
        True, True, "pass", 3, 3)
    v = summarise(job, {"outcomes": ["pass", "wrong_answer"]})
    assert (v["passed"], v["public_passed"], v["status"], v["tests_passed"]) == (
        False, True, "wrong_answer", 1)
    v = summarise(job, {"outcomes": ["timeout"]})
    assert (v["passed"], v["public_passed"], v["status"]) == (False, False, "timeout")
    v = summarise(job, {"outcomes": ["compile_error"]})
    assert v["status"] == "compile_error" and not v["public_passed"]
    none_public = {"id": "p", "tests": {"type": "stdin", "public": [], "private": [{"input": "", "output": ""}]}}
    v = summarise(build_job(none_public, "x", ExecuteConfig()), {"outcomes": ["wrong_answer"]})
    assert v["public_passed"] and not v["passed"]                      # vacuously true
    ut = build_job({"id": "b", "tests": {"type": "unittest", "code": ""}}, "x", ExecuteConfig())
    v = summarise(ut, {"outcomes": ["pass", "wrong_answer", "missing_dependency"], "names": ["a", "b", "c"]})
    assert v["status"] == "missing_dependency" and v["tests_total"] == 3 and v["tests_passed"] == 1
    v = summarise(ut, {"outcomes": ["pass"], "names": ["a", "b"]})     # cut short: not a pass
    assert not v["passed"]

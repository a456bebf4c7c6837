"""The Problem record written to data/problems.jsonl, and validation helpers.

A problem row (JSON object) has:
  id            "<benchmark>/<native id>": lcb/2777, lcb/abc301_a, bcb/BigCodeBench/13, humaneval/HumanEval/0
  benchmark     "humaneval" | "lcb" | "bcb"
  title, prompt, starter_code   strings ("" when absent); prompt is what a policy model is asked
  platform      "atcoder" | "leetcode" | "codeforces" | "bigcodebench" | "humaneval" (lower case)
  difficulty    "easy" | "medium" | "hard"
  release_date  "YYYY-MM-DD" or null
  category      BCB domain (one of the seven) or null
  reference     a known-correct program (HumanEval, BCB), or null (LCB)
  tests         dict, see below

tests:
  type          "stdin" | "functional" | "unittest" | "humaneval"
  public        list of {"input": str, "output": str}: tests a policy or judge may see
                  stdin:      program stdin / expected stdout
                  functional: one JSON value per input line (the arguments) / JSON expected result
                  humaneval:  a Python expression calling the entry point / a Python expression of
                              the expected value (docstring examples); may be empty
                  unittest:   always empty (BCB has no public tests)
  private       list of {"input", "output"} hidden tests (stdin / functional); empty otherwise
  func_name     method of `class Solution` (functional), else null
  entry_point   function name (humaneval, unittest), else null
  code          the test code: the `check(candidate)` module (humaneval) or the unittest module
                with class TestCases (unittest); else null
  timeout_s     optional per-problem time limit override (BCB: 240 + 1 per task); else absent
"""

from __future__ import annotations

from daj.config import BENCHMARKS, SPLITS  # noqa: F401 - the params' enumerations, re-exported
from sandbox.inside.protocol import KINDS as TEST_TYPES  # noqa: F401 - the sandbox's list of test kinds, the only one

DIFFICULTIES = ("easy", "medium", "hard")
PROBLEM_FIELDS = ("id", "benchmark", "title", "prompt", "starter_code", "platform", "difficulty",
                  "release_date", "tests")
CANDIDATE_FIELDS = ("problem_id", "policy", "index", "code")
VERDICT_FIELDS = ("problem_id", "policy", "index", "passed", "public_passed", "status", "tests_passed",
                  "tests_total")
PAIR_FIELDS = ("problem_id", "domain", "prompt", "chosen", "rejected")


def domain_of(problem: dict) -> str:
    """The reweighting domain: the BCB category, else platform x difficulty (e.g. "atcoder/easy")."""
    if problem.get("benchmark") == "bcb" and problem.get("category"):
        return problem["category"]
    return f"{problem['platform']}/{problem['difficulty']}"

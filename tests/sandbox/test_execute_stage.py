"""The execute stage end to end on real HumanEval problems in the real local sandbox."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import repo_params

from daj.data.humaneval import load_humaneval_package
from daj.errors import DajError
from daj.io import read_jsonl, write_jsonl
from stages import execute


def params(policies=("good", "bad"), **execute_overrides):
    names = list(policies)
    overrides = {"policies": [{"name": n, "backend": "file", "path": f"{n}.jsonl"} for n in names],
                 "pairs.lower_policies": names[:1], "pairs.upper_policies": names[:1], "bon.policies": names[:1],
                 "caches.verdicts": ".cache/verdicts"}
    execute_settings = {"backend": "local", "allow_unsandboxed": False, "verdict_source": "sandbox",
                        "timeout_s": 3.0, "memory_mb": 1024, "workers": 1, **execute_overrides}
    overrides.update({f"execute.{k}": v for k, v in execute_settings.items()})
    return repo_params(**overrides)


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = load_humaneval_package()[:4]
    write_jsonl("data/problems.jsonl", problems)
    good = [{"problem_id": p["id"], "policy": "good", "index": 0, "code": p["reference"],
             "imported_passed": i != 0} for i, p in enumerate(problems)]  # one imported verdict disagrees
    bad = [{"problem_id": p["id"], "policy": "bad", "index": i, "code": p["prompt"] + "    return None\n"}
           for i, p in enumerate(problems)]
    bad.append({"problem_id": problems[0]["id"], "policy": "bad", "index": 9, "code": "import no_such_lib_q\n"})
    write_jsonl("data/candidates/good.jsonl", good)
    write_jsonl("data/candidates/bad.jsonl", bad)
    return tmp_path


def test_execute_writes_verdicts_and_metrics(workdir):
    execute.main(params())
    good = read_jsonl("data/verdicts/good.jsonl")
    bad = read_jsonl("data/verdicts/bad.jsonl")
    for row in good + bad:
        for field in ("problem_id", "policy", "index", "passed", "public_passed", "status", "tests_passed",
                      "tests_total", "sandbox_passed"):
            assert field in row
        assert "seconds" not in row  # timings go to logs/
    assert [r["passed"] for r in good] == [True] * 4 and [r["imported_passed"] for r in good][0] is False
    assert not any(r["passed"] for r in bad) and "imported_passed" not in bad[0]
    assert bad[-1]["status"] == "missing_dependency"
    metrics = json.load(open("metrics/execute.json"))
    assert metrics["good"]["candidates"] == 4 and metrics["good"]["passed"] == 4
    assert metrics["good"]["agreement"] == 3 and metrics["bad"]["status"]["missing_dependency"] == 1
    assert metrics["good"]["backend"] == "local" and set(metrics) == {"good", "bad"}
    first = {p: Path(f"data/verdicts/{p}.jsonl").read_bytes() for p in ("good", "bad")}

    Path(".cache/verdicts/verdicts.sqlite").unlink()  # judged afresh: the same bytes
    execute.main(params())
    assert {p: Path(f"data/verdicts/{p}.jsonl").read_bytes() for p in ("good", "bad")} == first
    runs = json.load(open("logs/execute.json"))
    assert runs["good"]["cache_hits"] == 0 and runs["good"]["seconds"] > 0

    execute.main(params(verdict_source="imported"))   # re-run: all from the cache
    good2 = read_jsonl("data/verdicts/good.jsonl")
    assert [r["passed"] for r in good2] == [False, True, True, True]
    assert [r["sandbox_passed"] for r in good2] == [True] * 4
    metrics = json.load(open("metrics/execute.json"))
    runs = json.load(open("logs/execute.json"))  # cache hits are how the run went, not a result
    assert (runs["good"]["cache_hits"], runs["bad"]["cache_hits"]) == (4, 5)
    assert "cache_hits" not in metrics["good"] and "seconds" not in metrics["good"]
    assert metrics["good"]["passed"] == 3 and metrics["good"]["sandbox_passed"] == 4


def test_bad_input_names_file_line_and_field(workdir):
    write_jsonl("data/candidates/bad.jsonl", [{"problem_id": "humaneval/HumanEval/0", "policy": "bad",
                                               "index": 0}])
    with pytest.raises(DajError, match=r"bad.jsonl:1.*code"):
        execute.main(params())
    write_jsonl("data/candidates/bad.jsonl", [{"problem_id": "nope/1", "policy": "bad", "index": 0, "code": ""}])
    with pytest.raises(DajError, match=r"bad.jsonl:1.*problem_id"):
        execute.main(params())


def test_only_the_policies_in_params_are_judged(workdir):
    # a stale file of a policy no longer in params is ignored, and gets no verdict file
    write_jsonl("data/candidates/stale.jsonl", [{"problem_id": "nope/1", "policy": "stale", "index": 0,
                                                 "code": "print(1)"}])
    execute.main(params(policies=("good",)))
    assert sorted(p.name for p in Path("data/verdicts").iterdir()) == ["good.jsonl"]
    assert set(json.load(open("metrics/execute.json"))) == {"good"}
    with pytest.raises(DajError, match="missing.jsonl"):
        execute.main(params(policies=("good", "missing")))


def test_any_string_a_candidate_prints_or_raises_survives(workdir):
    problem = load_humaneval_package()[0]
    hostile = [problem["prompt"] + "    raise ValueError('\\ud800 lone surrogate \\udfff')\n",
               problem["prompt"] + "    return 'x\\ud800'\n"]
    rows = [{"problem_id": problem["id"], "policy": "bad", "index": i, "code": c} for i, c in enumerate(hostile)]
    write_jsonl("data/candidates/bad.jsonl", rows)
    for _ in range(2):  # the second run reads the verdicts back from the cache
        execute.main(params())
        bad = read_jsonl("data/verdicts/bad.jsonl")
        assert [r["status"] for r in bad] == ["runtime_error", "wrong_answer"]
        assert "\ud800" in bad[0]["error"] and "\\ud800" in bad[1]["error"]


FAKE_SECCOMP = """
ALLOW, MASKED_EQ = 0, 1
def ERRNO(n):
    return n
class Arg:
    def __init__(self, *a):
        pass
class SyscallFilter:
    loaded = 0
    def __init__(self, defaction):
        pass
    def add_rule(self, *a, **k):
        pass
    def load(self):
        # the zygote's filter loads; a host's own (loaded after the fork) never does
        SyscallFilter.loaded += 1
        if SyscallFilter.loaded > 1:
            raise OSError("refused")
"""


def test_a_candidate_that_breaks_the_harness_every_time_is_a_sandbox_error(workdir, monkeypatch, caplog):
    """A harness fault on every retry ends neither the stage nor the other verdicts: the candidate gets
    a recorded sandbox_error, counted in the metrics and named (policy, problem, index) in the log."""
    from sandbox import local

    fake = workdir / "fake"
    fake.mkdir()
    (fake / "pyseccomp.py").write_text(FAKE_SECCOMP)
    # no bwrap here, only the unsandboxed harness, which sees this fake pyseccomp: every job faults
    monkeypatch.setattr(local, "find_bwrap", lambda: None)
    monkeypatch.setitem(local.SANDBOX_ENV, "PYTHONPATH", str(fake))
    with caplog.at_level(logging.WARNING):
        execute.main(params(policies=("good",), allow_unsandboxed=True))
    good = read_jsonl("data/verdicts/good.jsonl")
    assert [r["status"] for r in good] == ["sandbox_error"] * 4 and not any(r["passed"] for r in good)
    assert json.load(open("metrics/execute.json"))["good"]["status"] == {"sandbox_error": 4}
    assert json.load(open("logs/execute.json"))["good"]["sandbox_errors"] == 4
    named = [r.getMessage() for r in caplog.records if "sandbox" in r.getMessage() and "candidate 0" in
             r.getMessage() and "policy good" in r.getMessage()]
    assert named and "execute." not in named[0], named

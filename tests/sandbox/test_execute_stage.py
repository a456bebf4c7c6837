"""The execute stage end to end on real HumanEval problems in the real local sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daj.config import ParamsConfig
from daj.data.humaneval import load_humaneval_package
from daj.errors import DajError
from daj.io import read_jsonl, write_jsonl
from daj.params import validate_params
from stages import execute


def params(policies=("good", "bad"), **execute_overrides) -> ParamsConfig:
    section = {"backend": "local", "allow_unsandboxed": False, "verdict_source": "sandbox", "timeout_s": 3,
               "memory_mb": 1024, "workers": 1, **execute_overrides}
    return validate_params({"execute": section, "caches": {"verdicts": ".cache/verdicts"},
                            "policies": [{"name": n, "backend": "file", "path": f"{n}.jsonl"} for n in policies]})


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
                      "tests_total", "seconds", "sandbox_passed"):
            assert field in row
    assert [r["passed"] for r in good] == [True] * 4 and [r["imported_passed"] for r in good][0] is False
    assert not any(r["passed"] for r in bad) and "imported_passed" not in bad[0]
    assert bad[-1]["status"] == "missing_dependency"
    metrics = json.load(open("metrics/execute.json"))
    assert metrics["good"]["candidates"] == 4 and metrics["good"]["passed"] == 4
    assert metrics["good"]["agreement"] == 3 and metrics["bad"]["status"]["missing_dependency"] == 1
    assert metrics["good"]["backend"] == "local" and set(metrics) == {"good", "bad"}

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
    with pytest.raises(DajError, match="verdict_source"):
        execute.main(params(verdict_source="both"))


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

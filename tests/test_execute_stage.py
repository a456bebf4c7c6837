"""The execute stage end to end on real HumanEval problems in the real local sandbox."""

from __future__ import annotations

import json

import pytest

from daj.data.humaneval import load_humaneval_package
from daj.errors import DajError
from daj.io import read_jsonl, write_jsonl
from daj.params import Params
from stages import execute


def params(**execute_overrides) -> Params:
    section = {"backend": "local", "allow_unsandboxed": False, "verdict_source": "sandbox", "timeout_s": 3,
               "memory_mb": 1024, "workers": 1, "cache_dir": ".cache/verdicts", **execute_overrides}
    return Params({"execute": section})


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
    assert (metrics["good"]["cache_hits"], metrics["bad"]["cache_hits"]) == (4, 5)
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

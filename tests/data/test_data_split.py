"""split: exact LCB window boundaries, the BCB pass-rate ranking and its fallback, HumanEval fractions,
bad input, the stage end to end, and the real snapshots' counts."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daj.config import to_dict
from daj.data import bcb, humaneval, lcb
from daj.data.splits import read_verdicts, split_problems
from daj.errors import DajError
from daj.paths import shared_data

REPO = Path(__file__).resolve().parents[2]
SHARED = shared_data()


def lcb_problem(qid: str, date: str | None, platform: str = "atcoder", difficulty: str = "easy") -> dict:
    return {"id": f"lcb/{qid}", "benchmark": "lcb", "title": qid, "prompt": "", "starter_code": "",
            "platform": platform, "difficulty": difficulty, "release_date": date, "category": None,
            "reference": None, "tests": {"type": "stdin", "public": [], "private": []}}


def test_lcb_window_boundaries_exactly(make_params):
    dates = {"a": "2024-07-31", "b": "2024-08-01", "c": "2025-01-31", "d": "2025-02-01",
             "e": "2025-04-30", "f": "2025-05-01", "g": "2023-05-07"}
    problems = [lcb_problem(k, v) for k, v in dates.items()] + [lcb_problem("cf", "2024-08-01", "codeforces")]
    splits, metrics = split_problems(problems, make_params().split)
    got = {r["title"]: name for name, rows in splits.items() for r in rows}
    assert got == {"a": "lower", "g": "lower", "b": "upper", "c": "upper", "d": "test", "e": "test"}
    assert (metrics["lower"], metrics["upper"], metrics["test"]) == (2, 2, 2)
    assert metrics["dropped_after_test_end"] == 1 and metrics["excluded"] == {"codeforces": 1}
    assert metrics["domains"]["upper"] == {"atcoder/easy": 2}
    assert all(r["split"] == name and r["domain"] == "atcoder/easy" for name, rows in splits.items() for r in rows)


def test_lcb_windows_follow_params_and_unquoted_yaml_dates(make_params):
    import datetime as dt

    problems = [lcb_problem("a", "2024-01-10"), lcb_problem("b", "2024-01-20")]
    params = make_params(**{"split.lcb_upper_start": dt.date(2024, 1, 15), "split.exclude_platforms": []})
    splits, _ = split_problems(problems, params.split)
    assert [r["title"] for r in splits["lower"]] == ["a"] and [r["title"] for r in splits["upper"]] == ["b"]


@pytest.mark.parametrize(("overrides", "field"), [
    ({"split.lcb_upper_start": "August"}, "split.lcb_upper_start"),
    ({"split.lcb_test_start": "2024-01-01"}, "split"),
    ({"split.exclude_platforms": "codeforces"}, "split.exclude_platforms"),
])
def test_lcb_bad_params(overrides, field, make_params):
    with pytest.raises(DajError) as err:
        split_problems([lcb_problem("a", "2024-01-01")], make_params(**overrides).split)
    assert err.value.field == field and err.value.path == "params.yaml"


def test_lcb_problem_without_date_is_an_error(make_params):
    with pytest.raises(DajError, match="lcb/x has no release_date") as err:
        split_problems([lcb_problem("x", None)], make_params().split, source="data/problems.jsonl")
    assert err.value.path == "data/problems.jsonl"


def bcb_problem(n: int, size: int, *, hard: bool = False, category: str = "Computation") -> dict:
    return {"id": f"bcb/BigCodeBench/{n}", "benchmark": "bcb", "title": f"BigCodeBench/{n}", "prompt": "",
            "starter_code": "", "platform": "bigcodebench", "difficulty": "hard" if hard else "easy",
            "release_date": None, "category": category, "hard": hard, "solution_size": size,
            "reference": None, "tests": {"type": "unittest", "public": [], "private": []}}


def test_bcb_pass_rate_ranking_with_deterministic_ties(make_params):
    problems = [bcb_problem(i, size=10 + i) for i in range(10)] + [bcb_problem(10, 5, hard=True, category="Time")]
    verdicts = {p["id"]: [True, True] for p in problems[:10]}
    verdicts["bcb/BigCodeBench/7"] = [False, False]          # rate 0: hardest
    verdicts["bcb/BigCodeBench/2"] = [False, True]           # rate .5, tie with 5 -> larger solution (5) first
    verdicts["bcb/BigCodeBench/5"] = [True, False]
    verdicts["bcb/BigCodeBench/3"] = [True, True, True, False]
    splits, _ = split_problems(problems, make_params(**{"split.bcb_upper_fraction": 0.2}).split, verdicts)
    assert [r["title"] for r in splits["upper"]] == ["BigCodeBench/5", "BigCodeBench/7"]  # the tie: 5 beats 2
    splits, metrics = split_problems(problems, make_params(**{"split.bcb_upper_fraction": 0.3}).split, verdicts)
    assert [r["title"] for r in splits["upper"]] == ["BigCodeBench/2", "BigCodeBench/5", "BigCodeBench/7"]
    assert [r["title"] for r in splits["test"]] == ["BigCodeBench/10"]
    assert metrics["bcb_upper_rule"] == "pass_rate" and (metrics["lower"], metrics["upper"], metrics["test"]) == (7, 3, 1)
    assert metrics["domains"]["test"] == {"Time": 1}
    assert splits["upper"][2]["policy_pass_rate"] == 0.0
    # rank order by pass rate: 7 (0.0) < 2, 5 (0.5; 5 is larger) < 3 (0.75)
    splits, _ = split_problems(problems, make_params(**{"split.bcb_upper_fraction": 0.4}).split, verdicts)
    assert {r["title"] for r in splits["upper"]} == {f"BigCodeBench/{i}" for i in (7, 5, 2, 3)}


def test_bcb_fallback_when_verdicts_are_missing(make_params):
    problems = [bcb_problem(i, size=s) for i, s in enumerate([30, 50, 50, 10, 20])]
    partial = {"bcb/BigCodeBench/0": [False]}
    for verdicts in ({}, partial):
        splits, metrics = split_problems(problems, make_params(**{"split.bcb_upper_fraction": 0.4}).split, verdicts)
        assert metrics["bcb_upper_rule"] == "solution_size"
        assert [r["title"] for r in splits["upper"]] == ["BigCodeBench/1", "BigCodeBench/2"]
    assert metrics["bcb_verdict_coverage"] == {"with_verdicts": 1, "tasks": 5}


def test_humaneval_fractions_and_errors(make_params):
    problems = humaneval.load_humaneval_package()
    splits, metrics = split_problems(problems, make_params().split)
    assert (metrics["lower"], metrics["upper"], metrics["test"]) == (98, 33, 33)
    assert [r["order"] for r in splits["lower"]] == list(range(98))
    assert splits["upper"][0]["id"] == "humaneval/HumanEval/98" and splits["test"][-1]["order"] == 163
    assert set(metrics["domains"]["test"]) == {"humaneval/easy", "humaneval/medium", "humaneval/hard"}
    splits, metrics = split_problems(problems[:10], make_params(**{"split.humaneval_fractions": [0.5, 0.3, 0.2]}).split)
    assert (metrics["lower"], metrics["upper"], metrics["test"], metrics["dropped_after_test_end"]) == (5, 3, 2, 0)
    for bad in ([0.6, 0.6, 0.2], [0.5, 0.25, 0.15], [0.5, 0.5], "0.6,0.2,0.2", [0.5, -0.1, 0.2]):
        with pytest.raises(DajError) as err:
            split_problems(problems, make_params(**{"split.humaneval_fractions": bad}).split)
        assert err.value.field.startswith("split.humaneval_fractions")


def test_read_verdicts_bad_lines(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"problem_id": "x", "passed": true}\n{"problem_id": "x", "passed": false}\n')
    assert read_verdicts(tmp_path)[0] == {"x": [True, False]}
    (tmp_path / "b.jsonl").write_text('{"problem_id": "y", "passed": true}\n{"problem_id": "y"}\n')
    with pytest.raises(DajError) as err:
        read_verdicts(tmp_path)
    assert (err.value.path, err.value.line, err.value.field) == (str(tmp_path / "b.jsonl"), 2, "passed")
    (tmp_path / "b.jsonl").write_text('{"problem_id": "y", "passed": "yes"}\n')
    with pytest.raises(DajError, match="true or false"):
        read_verdicts(tmp_path)
    assert read_verdicts(tmp_path / "none") == ({}, [])


def run_stage(name: str, cwd: Path, params: dict) -> subprocess.CompletedProcess:
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAJ_PARAMS": str(cwd / "params.yaml")}
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_split_stage_end_to_end_and_no_partial_output(tmp_path, make_params):
    params = to_dict(make_params(**{"data.limit": 20}))
    assert run_stage("fetch", tmp_path, params).returncode == 0
    out = run_stage("split", tmp_path, params)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "metrics" / "split.json").read_text())
    assert (metrics["lower"], metrics["upper"], metrics["test"]) == (12, 4, 4)
    lower = [json.loads(x) for x in (tmp_path / "data" / "splits" / "lower.jsonl").read_text().splitlines()]
    assert len(lower) == 12 and all(r["split"] == "lower" and r["domain"].startswith("humaneval/") for r in lower)
    snapshot = {p: p.read_bytes() for p in (tmp_path / "data" / "splits").iterdir()}
    snapshot[tmp_path / "metrics" / "split.json"] = (tmp_path / "metrics" / "split.json").read_bytes()
    problems = tmp_path / "data" / "problems.jsonl"
    lines = problems.read_text().splitlines()
    for broken, expect in ((lines[:3] + ["{oops"] + lines[4:], ":4: malformed JSON"),
                           (lines[:5] + [json.dumps({k: v for k, v in json.loads(lines[5]).items() if k != "tests"})],
                            ":6, field 'tests'")):
        problems.write_text("\n".join(broken) + "\n")
        out = run_stage("split", tmp_path, params)
        assert out.returncode == 2 and "data/problems.jsonl" in out.stderr and expect in out.stderr, out.stderr
        assert {p: p.read_bytes() for p in snapshot} == snapshot
        assert sorted(p.name for p in (tmp_path / "data" / "splits").iterdir()) == [
            "lower.jsonl", "test.jsonl", "upper.jsonl"]
    problems.write_text("\n".join(lines) + "\n")
    (tmp_path / "data" / "verdicts").mkdir()
    (tmp_path / "data" / "verdicts" / "p.jsonl").write_text('{"problem_id": "x"}\n')
    out = run_stage("split", tmp_path, params)
    assert out.returncode == 2 and "p.jsonl:1, field 'passed'" in out.stderr


@pytest.mark.skipif(not (SHARED / "lcb").is_dir(), reason="shared/data not present")
def test_real_lcb_snapshot_split(make_params):
    problems = lcb.load_lcb_snapshot(SHARED / "lcb" / "code_generation_lite")
    splits, metrics = split_problems(problems, make_params(benchmark="lcb").split)
    assert (metrics["lower"], metrics["upper"], metrics["test"]) == (592, 279, 0)
    assert metrics["excluded"] == {"codeforces": 9} and metrics["problems"] == 880
    for name, (start, end) in {"lower": ("0000", "2024-08-01"), "upper": ("2024-08-01", "2025-02-01")}.items():
        assert all(start <= r["release_date"] < end and r["platform"] != "codeforces" for r in splits[name])
    for name in ("lower", "upper"):
        assert len(metrics["domains"][name]) == 6 and all(n > 0 for n in metrics["domains"][name].values())
    # agrees, problem by problem, with the DaJ split column of the v6 leaderboard index
    index = {r["question_id"]: r["split_daj"]
             for r in csv.DictReader((SHARED / "lcb" / "leaderboard" / "lcb_v6_problem_index.csv").open())}
    assert all(index[r["id"].removeprefix("lcb/")] == name for name, rows in splits.items() for r in rows)


@pytest.mark.skipif(not (SHARED / "bigcodebench").is_dir(), reason="shared/data not present")
def test_real_bcb_snapshot_split(make_params):
    problems = bcb.load_bcb_snapshot(SHARED / "bigcodebench")
    splits, metrics = split_problems(problems, make_params(benchmark="bcb").split)
    assert metrics["test"] == 148 and metrics["lower"] + metrics["upper"] == 992
    assert (metrics["lower"], metrics["upper"]) == (794, 198) and metrics["bcb_upper_rule"] == "solution_size"
    assert all(r["hard"] for r in splits["test"]) and not any(r["hard"] for r in splits["upper"] + splits["lower"])
    assert min(r["solution_size"] for r in splits["upper"]) >= max(r["solution_size"] for r in splits["lower"])
    assert set(metrics["domains"]["lower"]) == set(bcb.CATEGORIES)

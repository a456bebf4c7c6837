"""python -m daj.select: the judge's picks on a pool without verdicts, equal to the bon stage's judge picks;
hybrid and public tests through the real sandbox; bad inputs named by file, line and field, nothing written."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from _judge_data import make_workspace

from daj import select
from daj.io import read_jsonl, write_jsonl
from daj.params import load_config
from stages import bon as bon_stage


def bon_picks(root, method: str) -> dict[str, int]:
    """problem id -> the bon stage's pick of `method`, where it voted (not skipped)."""
    with open(root / "metrics/bon_problems.csv") as fh:
        return {r["problem_id"]: int(r["picked"]) for r in csv.DictReader(fh)
                if r["method"] == method and r["judge_skipped"] == "False" and r["picked"] != ""}


@pytest.fixture(scope="module")
def workspace(tiny_model, tmp_path_factory):
    """The bon stage on 3 HumanEval test problems (tiny judge, plain and swapped votes)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("select")
    make_workspace(root, tiny_model, bon__scaling_judge=False, bon__rounds=6)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        bon_stage.main(load_config())
        shutil.copy(root / "metrics/bon_problems.csv", root / "plain.csv")
        make_workspace(root, tiny_model, bon__scaling_judge=False, bon__rounds=6, bon__swap=True)
        bon_stage.main(load_config())
        shutil.copy(root / "metrics/bon_problems.csv", root / "swap.csv")
        make_workspace(root, tiny_model, bon__scaling_judge=False, bon__rounds=6)
    return root


def pick(root, *extra: str) -> list[dict]:
    out = root / "picks.jsonl"
    assert select.main(["--problems", str(root / "data/splits/test.jsonl"), "--candidates",
                        str(root / "data/candidates/mutants.jsonl"), "--out", str(out), *extra]) == 0
    return read_jsonl(out)


@pytest.mark.parametrize("method", ["judge", "swap"])
def test_judge_picks_equal_the_bon_stage(workspace, monkeypatch, method):
    monkeypatch.chdir(workspace)
    (workspace / "metrics/bon_problems.csv").write_bytes((workspace / f"{'plain' if method == 'judge' else 'swap'}.csv")
                                                         .read_bytes())
    want = bon_picks(workspace, "judge")
    assert want  # the stage voted somewhere: the comparison means something
    rows = pick(workspace, "--method", method)
    got = {r["problem_id"]: r["picked"] for r in rows}
    assert {pid: got[pid] for pid in want} == want
    for r in rows:
        assert r["method"] == method and r["n_candidates"] == 4 and len(r["votes"]) == 4
        assert r["code"] == read_code(workspace, r["problem_id"], r["picked"])
        orders = 2 if method == "swap" else 1  # a swapped round asks both orders
        assert r["judge_responses"] == 6 * orders and 1 <= r["judge_prompts"] <= 6 * orders
    # another seed, other draws: the seed is the params' (or --seed)
    assert [r["votes"] for r in pick(workspace, "--method", method, "--seed", "5")] != [r["votes"] for r in rows]


def read_code(root, pid: str, index: int) -> str:
    rows = [r for r in read_jsonl(root / "data/candidates/mutants.jsonl") if r["problem_id"] == pid]
    return rows[index]["code"]


def test_hybrid_and_public_tests_run_the_public_tests_in_the_sandbox(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    hybrid = pick(workspace, "--method", "hybrid")
    public = pick(workspace, "--method", "public_tests")
    for h, p in zip(hybrid, public, strict=True):
        # the HumanEval docstring examples: the reference and its copy pass them, the wrong programs do not
        assert h["public_passed"] == p["public_passed"] == [False, True, True, False]
        assert h["voters"] == p["voters"] == [1, 2]
        assert h["picked"] in (1, 2) and p["picked"] in (1, 2) and p["judge_responses"] == 0


def test_bad_inputs_are_named_and_nothing_is_written(workspace, tmp_path, capsys):
    problems = tmp_path / "problems.jsonl"
    write_jsonl(problems, [{"id": "a", "statement": "x"}, {"id": "b"}])
    out = tmp_path / "out.jsonl"
    args = ["--problems", str(problems), "--candidates", str(workspace / "data/candidates/mutants.jsonl"),
            "--out", str(out)]
    assert select.main(args) == 2
    assert f"{problems}:2, field 'statement'" in capsys.readouterr().err and not out.exists()
    write_jsonl(problems, [{"id": "a", "statement": "x"}, {"id": "a", "statement": "y"}])
    assert select.main(args) == 2 and "duplicate problem id" in capsys.readouterr().err
    bad_pool = tmp_path / "pool.json"
    bad_pool.write_text(json.dumps([{"question_id": 1}]))
    args[3] = str(bad_pool)
    write_jsonl(problems, [{"id": "lcb/1", "statement": "x"}])
    assert select.main(args) == 2 and "field 'code_list'" in capsys.readouterr().err and not out.exists()


def test_an_lcb_pool_and_a_problem_without_candidates(tiny_model, tmp_path, monkeypatch):
    """LiveCodeBench's format, problems without tests: public_tests needs no model and no sandbox run."""
    monkeypatch.chdir(tmp_path)
    make_workspace(tmp_path, tiny_model)
    pool = tmp_path / "m_eval_all.json"
    pool.write_text(json.dumps([{"question_id": "q1", "code_list": ["print(1)", "print(2)", "print(3)"]}]))
    problems = tmp_path / "problems.jsonl"
    write_jsonl(problems, [{"id": "lcb/q1", "statement": "Print a number."}, {"id": "lcb/q2", "statement": "?"}])
    out = tmp_path / "picks.jsonl"
    assert select.main(["--problems", str(problems), "--candidates", str(pool), "--out", str(out),
                        "--method", "public_tests"]) == 0
    first, second = read_jsonl(out)
    assert first["picked"] in (0, 1, 2) and first["source"] == "m_eval_all.json" and first["voters"] == [0, 1, 2]
    assert first["public_passed"] == [True, True, True]  # no public tests: every candidate passes vacuously
    assert second["picked"] is None and second["n_candidates"] == 0

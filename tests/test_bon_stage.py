"""The bon stage on real HumanEval problems with the tiny judge, with and without a trained adapter."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from _judge_data import make_workspace
from _tiny_model import tiny_model_dir

from daj.errors import DajError
from daj.params import load_params
from stages import bon as bon_stage

METHODS = {"random", "oracle", "first", "public_tests", "judge"}


@pytest.fixture(scope="module")
def bon_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bon")
    make_workspace(root, tiny_model_dir(), bon__scaling_n=None)  # every N from 1 to the pool size
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        bon_stage.main(load_params())
    return root


def test_bon_json_contract_and_exact_values(bon_run):
    bon = json.loads((bon_run / "metrics/bon.json").read_text())
    assert set(bon) == {"mutants"} and set(bon["mutants"]) == METHODS
    for entry in bon["mutants"].values():
        assert set(entry) == {"overall", "easy", "medium", "hard", "n"} and entry["n"] == 3
    m = bon["mutants"]
    # each pool: 2 passing of 4, public passers are 0 (fail), 1, 2 (pass)
    assert m["random"]["overall"] == 50.0 and m["oracle"]["overall"] == 100.0 and m["first"]["overall"] == 0.0
    assert m["public_tests"]["overall"] == pytest.approx(200 / 3, abs=1e-3)
    assert 0.0 <= m["judge"]["overall"] <= 100.0


def test_problem_rows_cost_and_scaling(bon_run):
    rows = list(csv.DictReader((bon_run / "metrics/bon_problems.csv").open()))
    assert len(rows) == 3 * 5 and {r["method"] for r in rows} == METHODS
    judge_rows = [r for r in rows if r["method"] == "judge"]
    assert all(r["picked"] in {"0", "1", "2", "3"} and len(r["votes"].split(";")) == 4 for r in judge_rows)
    for r in judge_rows:
        votes = [int(v) for v in r["votes"].split(";")]
        assert votes[1] == votes[2]  # the reference and its reformatted copy share their votes
        assert votes[int(r["picked"])] == max(votes)
    cost = json.loads((bon_run / "metrics/bon_cost.json").read_text())["mutants"]
    assert cost["methods"]["judge"]["responses"] > 0 and cost["methods"]["random"]["responses"] == 0
    assert set(cost["judge_per_problem"]) == {r["problem_id"] for r in judge_rows}
    scaling_n = list(csv.DictReader((bon_run / "metrics/bon_scaling_n.csv").open()))
    assert [int(r["n"]) for r in scaling_n] == [1, 2, 3, 4]
    assert float(scaling_n[0]["oracle"]) == 50.0 and float(scaling_n[-1]["oracle"]) == 100.0
    assert float(scaling_n[-1]["judge"]) == json.loads((bon_run / "metrics/bon.json").read_text())["mutants"]["judge"]["overall"]
    scaling_r = list(csv.DictReader((bon_run / "metrics/bon_scaling_r.csv").open()))
    assert [int(r["rounds"]) for r in scaling_r] == [1, 2, 3, 4] and "judge" in scaling_r[0]


def test_trained_adapter_is_used_when_present(tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    make_workspace(tmp_path, tiny_model_dir(), bon__scaling_judge=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir())
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(tmp_path / "models/judge")
    monkeypatch.chdir(tmp_path)
    bon_stage.main(load_params())
    cost = json.loads((tmp_path / "metrics/bon_cost.json").read_text())["mutants"]
    assert cost["judge"]["adapter"] == "models/judge"
    (tmp_path / "models/judge/adapter_config.json").unlink()
    with pytest.raises(DajError, match="adapter_config.json"):
        bon_stage.main(load_params())


def test_missing_verdicts_fail_cleanly(tmp_path, monkeypatch):
    make_workspace(tmp_path, tiny_model_dir())
    (tmp_path / "data/verdicts/mutants.jsonl").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DajError, match="verdicts/mutants.jsonl"):
        bon_stage.main(load_params())
    assert not (tmp_path / "metrics/bon.json").exists()

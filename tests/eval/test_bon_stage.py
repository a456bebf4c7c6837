"""The bon stage on real HumanEval problems with the tiny judge, with and without a trained adapter."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from _judge_data import make_workspace
from _tiny_model import tiny_model_dir

from daj.errors import DajError
from daj.params import load_config
from stages import bon as bon_stage

METHODS = {"random", "oracle", "first", "public_tests", "judge", "hybrid"}


@pytest.fixture(scope="module")
def bon_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bon")
    make_workspace(root, tiny_model_dir(), bon__scaling_n=None)  # every N from 1 to the pool size
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        bon_stage.main(load_config())
    return root


def test_bon_json_contract_and_exact_values(bon_run):
    bon = json.loads((bon_run / "metrics/bon.json").read_text())
    assert set(bon) == {"mutants"} and set(bon["mutants"]) == METHODS
    for method, entry in bon["mutants"].items():
        assert {"overall", "easy", "medium", "hard", "n"} <= set(entry) and entry["n"] == 3
        low, high = entry["ci95"]  # the 95% bootstrap interval over problems
        assert low <= entry["overall"] <= high, method
    m = bon["mutants"]
    assert m["random"]["ci95"] == [50.0, 50.0] and m["oracle"]["ci95"] == [100.0, 100.0]  # equal on every problem
    for ref in ("random", "public_tests"):  # paired intervals of the judge's margins
        paired = m["judge"][f"minus_{ref}"]
        assert paired["diff"] == pytest.approx(m["judge"]["overall"] - m[ref]["overall"], abs=1e-3)
        assert paired["ci95"][0] <= paired["diff"] <= paired["ci95"][1]
    # each pool: 2 passing of 4, public passers are 0 (fail), 1, 2 (pass)
    assert m["random"]["overall"] == 50.0 and m["oracle"]["overall"] == 100.0 and m["first"]["overall"] == 0.0
    assert m["public_tests"]["overall"] == pytest.approx(200 / 3, abs=1e-3)


def test_judge_pass_at_1_is_the_mean_verdict_of_its_picks(bon_run):
    """bon.json's judge and hybrid figures, recomputed from the picks in bon_problems.csv and the
    verdicts file (not from the rows' own verdict column)."""
    bon = json.loads((bon_run / "metrics/bon.json").read_text())["mutants"]
    verdicts = {(r["problem_id"], r["index"]): r for r in map(json.loads,
                                                              (bon_run / "data/verdicts/mutants.jsonl").open())}
    rows = list(csv.DictReader((bon_run / "metrics/bon_problems.csv").open()))
    for method in ("judge", "hybrid"):
        picks = [r for r in rows if r["method"] == method]
        assert len(picks) == 3 and all(r["judge_skipped"] == "False" for r in picks)  # 2 pass, 2 fail
        by_diff: dict[str, list[float]] = {}
        for r in picks:
            v = verdicts[(r["problem_id"], int(r["picked"]))]
            if method == "hybrid":
                assert v["public_passed"]  # candidates 0, 1, 2 pass the public tests, 3 does not
            assert float(r["verdict"]) == float(v["passed"])
            by_diff.setdefault("overall", []).append(float(v["passed"]))
            by_diff.setdefault(r["difficulty"], []).append(float(v["passed"]))
        for level, values in by_diff.items():
            assert bon[method][level] == round(100 * sum(values) / len(values), 4), (method, level)


def test_problem_rows_cost_and_scaling(bon_run):
    rows = list(csv.DictReader((bon_run / "metrics/bon_problems.csv").open()))
    assert len(rows) == 3 * 6 and {r["method"] for r in rows} == METHODS
    judge_rows = [r for r in rows if r["method"] == "judge"]
    assert all(r["picked"] in {"0", "1", "2", "3"} and len(r["votes"].split(";")) == 4 for r in judge_rows)
    for r in judge_rows:
        votes = [int(v) for v in r["votes"].split(";")]
        assert sum(votes) == 4  # the paper's tally: one vote per round (forced selection: always valid)
        assert votes[int(r["picked"])] == max(votes)
    cost = json.loads((bon_run / "metrics/bon_cost.json").read_text())["mutants"]
    assert cost["methods"]["judge"]["responses"] > 0 and cost["methods"]["random"]["responses"] == 0
    assert set(cost["judge_per_problem"]) == {r["problem_id"] for r in judge_rows}
    bon = json.loads((bon_run / "metrics/bon.json").read_text())["mutants"]
    curve = curves(bon_run / "metrics/bon_scaling_n.csv", "n")
    assert sorted(curve["oracle"]) == [1, 2, 3, 4] and set(curve) == METHODS
    assert curve["oracle"][1][0] == 50.0 and curve["oracle"][4][0] == 100.0
    assert curve["judge"][4][0] == bon["judge"]["overall"]
    rounds = curves(bon_run / "metrics/bon_scaling_r.csv", "rounds")
    assert sorted(rounds["judge"]) == [1, 2, 3, 4] and rounds["judge"][4][0] == bon["judge"]["overall"]
    for table in (curve, rounds):  # every point inside its band
        assert all(lo <= v <= hi for points in table.values() for v, lo, hi in points.values())


def curves(path, x: str) -> dict[str, dict[int, tuple[float, float, float]]]:
    """A long plot CSV (x, series, pass1, lo, hi) as {series: {x: (pass1, lo, hi)}}."""
    with open(path) as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == [x, "series", "pass1", "lo", "hi"]
        out: dict = {}
        for r in reader:
            assert int(r[x]) not in out.get(r["series"], {})  # one point per series and x
            out.setdefault(r["series"], {})[int(r[x])] = (float(r["pass1"]), float(r["lo"]), float(r["hi"]))
    return out


def test_shared_votes_option(tmp_path, monkeypatch):
    """bon.share_votes: true: the reference and its reformatted copy share their votes."""
    make_workspace(tmp_path, tiny_model_dir(), bon__scaling_judge=False, bon__share_votes=True)
    monkeypatch.chdir(tmp_path)
    bon_stage.main(load_config())
    rows = [r for r in csv.DictReader((tmp_path / "metrics/bon_problems.csv").open()) if r["method"] == "judge"]
    for r in rows:
        votes = [int(v) for v in r["votes"].split(";")]
        assert votes[1] == votes[2] and votes[int(r["picked"])] == max(votes)
    cost = json.loads((tmp_path / "metrics/bon_cost.json").read_text())["mutants"]
    assert cost["judge"]["share_votes"] is True and cost["share_votes"] is True
    make_workspace(tmp_path, tiny_model_dir(), bon__share_votes="yes")
    with pytest.raises(DajError, match="bon.share_votes"):
        load_config(tmp_path / "params.yaml")


def test_trained_adapter_is_used_when_present(tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    make_workspace(tmp_path, tiny_model_dir(), bon__scaling_judge=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir())
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(tmp_path / "models/judge")
    monkeypatch.chdir(tmp_path)
    bon_stage.main(load_config())
    cost = json.loads((tmp_path / "metrics/bon_cost.json").read_text())["mutants"]
    assert cost["judge"]["adapter"] == "models/judge"
    (tmp_path / "models/judge/adapter_config.json").unlink()
    with pytest.raises(DajError, match="adapter_config.json"):
        bon_stage.main(load_config())


def test_missing_verdicts_fail_cleanly(tmp_path, monkeypatch):
    make_workspace(tmp_path, tiny_model_dir())
    (tmp_path / "data/verdicts/mutants.jsonl").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DajError, match="verdicts/mutants.jsonl"):
        bon_stage.main(load_config())
    assert not (tmp_path / "metrics/bon.json").exists()


def test_reward_model_methods_on_tiny_stand_ins(tmp_path, monkeypatch):
    """bon.methods with prm and grm (tiny stand-ins: a seeded value head, the tiny model as GRM): results in
    metrics, calls in logs/, and a rerun served from the cache."""
    tiny = tiny_model_dir()
    make_workspace(tmp_path, tiny, bon__methods=["random", "public_tests", "prm", "grm"], bon__scaling_n=[1, 2, 4],
                   bon__prm={"model": tiny, "random_head_seed": 0}, bon__grm={"model": tiny, "max_new_tokens": 8})
    monkeypatch.chdir(tmp_path)
    bon_stage.main(load_config())
    bon = json.loads((tmp_path / "metrics/bon.json").read_text())["mutants"]
    assert set(bon) == {"random", "public_tests", "prm", "grm"}
    assert bon["grm"]["unparsable"] == 12  # the random tiny model writes no score: 4 candidates x 3 problems
    rows = [r for r in csv.DictReader((tmp_path / "metrics/bon_problems.csv").open()) if r["method"] == "prm"]
    assert len(rows) == 3 and all(len(r["scores"].split(";")) == 4 for r in rows)
    for r in rows:  # the pick has the best prm score (candidates sharing their weakest line tie)
        scores = [float(s) for s in r["scores"].split(";")]
        assert scores[int(r["picked"])] == max(scores)
    cost_text = (tmp_path / "metrics/bon_cost.json").read_text()
    assert "model_calls" not in cost_text and "cache_hits" not in cost_text
    cost = json.loads(cost_text)["mutants"]
    assert cost["prm"]["aggregation"] == "min" and "judge" not in cost
    logs = json.loads((tmp_path / "logs/bon.json").read_text())["mutants"]["methods"]
    assert logs["prm"]["model_calls"] == 12 and logs["grm"]["model_calls"] == 12
    curve = curves(tmp_path / "metrics/bon_scaling_n.csv", "n")
    assert set(curve) == {"random", "oracle", "first", "public_tests", "prm", "grm"}
    assert sorted(curve["prm"]) == [1, 2, 4] and curve["prm"][4][0] == bon["prm"]["overall"]
    first = (tmp_path / "metrics/bon.json").read_text()
    bon_stage.main(load_config())  # rerun: every reward-model answer comes from the cache
    logs = json.loads((tmp_path / "logs/bon.json").read_text())["mutants"]["methods"]
    assert logs["prm"]["model_calls"] == 0 and logs["grm"]["model_calls"] == 0
    assert (tmp_path / "metrics/bon.json").read_text() == first


def test_swap_option_judges_both_orders(tmp_path, monkeypatch):
    make_workspace(tmp_path, tiny_model_dir(), bon__scaling_judge=False, bon__methods=["random", "judge"])
    monkeypatch.chdir(tmp_path)
    bon_stage.main(load_config())
    plain = json.loads((tmp_path / "metrics/bon_cost.json").read_text())["mutants"]
    make_workspace(tmp_path, tiny_model_dir(), bon__scaling_judge=False, bon__methods=["random", "judge"],
                   bon__swap=True)
    bon_stage.main(load_config())
    swapped = json.loads((tmp_path / "metrics/bon_cost.json").read_text())["mutants"]
    assert swapped["judge"]["swap"] is True and "swap" not in plain["judge"]
    assert swapped["methods"]["judge"]["responses"] == 2 * plain["methods"]["judge"]["responses"] > 0


def test_bon_difficulty_bars_are_grouped_with_intervals(bon_run):
    with open(bon_run / "metrics/bon_difficulty.csv") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["difficulty", "series", "pass1", "lo", "hi"]
        bars = list(reader)
    bon = json.loads((bon_run / "metrics/bon.json").read_text())["mutants"]
    keys = [(r["series"], r["difficulty"]) for r in bars]
    assert len(keys) == len(set(keys))  # one bar per method and difficulty: nothing for a plot to stack
    assert {r["series"] for r in bars} == METHODS
    for r in bars:
        assert float(r["pass1"]) == bon[r["series"]][r["difficulty"]]
        assert float(r["lo"]) <= float(r["pass1"]) <= float(r["hi"])
    overall = {r["series"]: [float(r["lo"]), float(r["hi"])] for r in bars if r["difficulty"] == "overall"}
    assert all(overall[m] == bon[m]["ci95"] for m in METHODS)  # the overall bars carry bon.json's intervals

"""pairs.max_problems: a seeded cap on the problems judged per split, chosen among those with a mixed pair."""

from __future__ import annotations

import json
import random

import pytest
import torch
from _judge_data import make_workspace

from daj.data.pools import PoolCandidate
from daj.errors import DajError
from daj.io import read_jsonl, write_jsonl
from daj.judge.pairs import choose_problems, pair_prompts
from daj.params import load_config, validate_params
from stages import pairs as pairs_stage


def pool(pattern: str) -> list[PoolCandidate]:
    return [PoolCandidate("p", i, f"def f():\n    return {i}\n", ch == "T", True) for i, ch in enumerate(pattern)]


def split_with_pools(n: int = 30):
    """n problems: every third is mixed, then all-pass, then all-fail (and one without candidates)."""
    problems = [{"id": f"t/{i}", "domain": "d"} for i in range(n)]
    pools = {p["id"]: pool(("TFF", "TT", "FFF")[i % 3]) for i, p in enumerate(problems)}
    del pools["t/4"]
    problems.append({"id": "t/empty", "domain": "d"})
    return problems, pools


def test_cap_chooses_only_mixed_problems_in_split_order():
    problems, pools = split_with_pools()
    mixed = [p["id"] for p in problems if {c.passed for c in pools.get(p["id"], [])} == {True, False}]
    chosen, counts = choose_problems("lower", problems, pools, 4, seed=0)
    ids = [p["id"] for p in chosen]
    assert len(ids) == 4 and set(ids) <= set(mixed)
    assert ids == [i for i in mixed if i in ids]  # the split's order
    assert counts == {"problems_with_mixed_pair": 10, "problems_judged": 4}
    assert {p.problem["id"] for p in pair_prompts("lower", chosen, pools, 2, 0)} == set(ids)
    # a cap at or above the mixed count keeps every mixed problem and drops the others
    everything, counts = choose_problems("lower", problems, pools, 10, seed=0)
    assert [p["id"] for p in everything] == mixed and counts["problems_judged"] == 10


def test_choice_is_seeded_and_ignores_file_order_and_unrelated_problems():
    problems, pools = split_with_pools()
    ids = [p["id"] for p in choose_problems("lower", problems, pools, 4, seed=0)[0]]
    assert ids == [p["id"] for p in choose_problems("lower", problems, pools, 4, seed=0)[0]]
    shuffled = problems[:]
    random.Random(1).shuffle(shuffled)
    chosen = choose_problems("lower", shuffled, pools, 4, seed=0)[0]
    assert sorted(p["id"] for p in chosen) == sorted(ids)
    assert [p["id"] for p in chosen] == [p["id"] for p in shuffled if p["id"] in ids]  # that file's order
    extra = problems + [{"id": f"u/{i}", "domain": "d"} for i in range(5)]  # problems without a mixed pair
    pools_extra = {**pools, **{f"u/{i}": pool("TTT") for i in range(5)}}
    assert [p["id"] for p in choose_problems("lower", extra, pools_extra, 4, seed=0)[0]] == ids
    others = {tuple(p["id"] for p in choose_problems(split, problems, pools, 4, seed)[0])
              for split in ("lower", "upper") for seed in range(4)}
    assert len(others) > 1  # seed and split change the choice


def test_no_cap_keeps_every_problem():
    problems, pools = split_with_pools()
    chosen, counts = choose_problems("upper", problems, pools, None, seed=0)
    assert chosen == problems and counts == {"problems_with_mixed_pair": 10, "problems_judged": 10}
    assert pair_prompts("upper", chosen, pools, 2, 0) == pair_prompts("upper", problems, pools, 2, 0)


@pytest.mark.parametrize("value, field", [
    (0, "pairs.max_problems"), (-3, "pairs.max_problems"), (True, "pairs.max_problems"),
    ("5", "pairs.max_problems"), ([1, 2], "pairs.max_problems"),
    ({"lower": 0, "upper": 2}, "pairs.max_problems.lower"), ({"lower": 2, "upper": 1.5}, "pairs.max_problems.upper"),
    ({"lower": 2, "middle": 1}, "pairs.max_problems.middle")])
def test_bad_values_name_the_field(value, field):
    with pytest.raises(DajError, match=r"my_params\.yaml") as err:
        validate_params({"pairs": {"max_problems": value}}, "my_params.yaml")
    assert err.value.field == field


def test_good_values():
    def caps(value):
        return validate_params({"pairs": {"max_problems": value}}).pairs.problem_caps()

    assert caps(None) == {"lower": None, "upper": None} == validate_params({}).pairs.problem_caps()
    assert caps(7) == {"lower": 7, "upper": 7}
    assert caps({"lower": 40, "upper": None}) == {"lower": 40, "upper": None}
    assert caps({"lower": 2}) == {"lower": 2, "upper": None}  # a split left out is not capped


def test_stage_judges_only_the_capped_problems(tiny_model, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    make_workspace(tmp_path, tiny_model, pairs__max_problems={"lower": 1, "upper": None})
    # one upper problem without a mixed pair: all its candidates fail
    verdicts = read_jsonl(tmp_path / "data/verdicts/mutants.jsonl")
    upper_ids = [p["id"] for p in read_jsonl(tmp_path / "data/splits/upper.jsonl")]
    for v in verdicts:
        if v["problem_id"] == upper_ids[0]:
            v["passed"] = False
    write_jsonl(tmp_path / "data/verdicts/mutants.jsonl", verdicts)
    monkeypatch.chdir(tmp_path)
    pairs_stage.main(load_config())
    metrics = json.loads((tmp_path / "metrics/pairs.json").read_text())
    assert metrics["lower"]["max_problems"] == 1 and metrics["lower"]["problems_with_mixed_pair"] == 3
    assert metrics["lower"]["problems_judged"] == metrics["lower"]["problems"] == 1
    assert metrics["upper"]["problems_with_mixed_pair"] == metrics["upper"]["problems_judged"] == 2
    lower = read_jsonl(tmp_path / "data/pairs/lower_scored.jsonl")
    assert len({r["problem_id"] for r in lower}) == 1 and len(lower) == 2 * 2 * 2  # 2 pairs x 2 orders x 2
    upper = read_jsonl(tmp_path / "data/pairs/upper_scored.jsonl")
    assert {r["problem_id"] for r in upper} == set(upper_ids[1:])

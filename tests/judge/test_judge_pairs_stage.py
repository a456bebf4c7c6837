"""The pairs stage on real HumanEval problems with the tiny judge (hf engine, forced selection)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from _judge_data import make_workspace

from daj.errors import DajError
from daj.io import read_jsonl
from daj.params import load_config
from stages import pairs as pairs_stage

LEVELS = {"correct": 0.75, "wrong": -0.25, "format_error": -2.0}  # not the defaults: a copy of them fails


@pytest.fixture(scope="module")
def pairs_run(tiny_model, tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pairs")
    make_workspace(root, tiny_model, **{f"reward__{k}": v for k, v in LEVELS.items()})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        pairs_stage.main(load_config())
    return root


def test_pairs_outputs_follow_the_contract(tiny_model, pairs_run):
    from transformers import AutoTokenizer

    root = pairs_run
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    metrics = json.loads((root / "metrics/pairs.json").read_text())
    for split in ("lower", "upper"):
        scored = read_jsonl(root / f"data/pairs/{split}_scored.jsonl")
        records = read_jsonl(root / f"data/pairs/{split}.jsonl",
                             required=("id", "problem_id", "domain", "prompt", "messages", "chosen", "rejected",
                                       "candidates", "correct_position"))
        m = metrics[split]
        # 3 problems x min(2 passing x 2 failing, max 2) pairs x 2 orders x 2 responses
        assert m["pairs"] == 6 and m["prompts"] == 12 and len(scored) == m["responses"] == 24
        assert len(records) == m["preference_records"] > 0  # forced sampling varies the tiny judge's answers
        assert len({r["id"] for r in scored}) == len(scored) and len({r["id"] for r in records}) == len(records)
        by_group: dict = {}
        for r, position in zip(scored, passing_positions(root, scored), strict=True):
            by_group.setdefault(r["group"], []).append(r)
            selection = last_tag(r["response"])  # read here, not with the stage's parser
            assert selection in (1, 2)  # forced selection: every response ends with a valid tag
            assert r["selection"] == selection and r["correct_position"] == position
            expected = "correct" if selection == position else "wrong"
            assert r["label"] == expected and r["reward"] == LEVELS[expected]
            assert r["prompt"] == tokenizer.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True)
        assert all(len(g) == 2 for g in by_group.values())
        positions = sorted(rs[0]["correct_position"] for rs in by_group.values())
        assert positions == [1] * 6 + [2] * 6  # both orders of every pair
        for rec in records:
            chosen = next(r for r in scored if r["response"] == rec["chosen"] and r["group"] == rec["group"])
            assert chosen["label"] == "correct"
        right = sum(last_tag(r["response"]) == pos for r, pos in zip(scored, passing_positions(root, scored),
                                                                     strict=True))
        assert m["judge_accuracy"] == pytest.approx(right / 24)
        assert m["mean_reward"] == pytest.approx((right * LEVELS["correct"] + (24 - right) * LEVELS["wrong"]) / 24)
        assert 0 <= m["position1_rate"] <= 1 and m["raw_format_error_rate"] >= m["format_error_rate"]
        assert sum(d["pairs"] for d in m["domains"].values()) == 6


def last_tag(text: str) -> int | None:
    """The number in the response's final `<selection>N</selection>` (the forced tail), else None."""
    match = re.search(r"<selection>(\d+)</selection>\s*$", text)
    return int(match.group(1)) if match else None


def passing_positions(root, rows: list[dict]) -> list[int]:
    """Where the passing program sits in each row's prompt, from the verdict and candidate files."""
    passed = {(v["problem_id"], v["index"]): v["passed"] for v in read_jsonl(root / "data/verdicts/mutants.jsonl")}
    codes = {(c["problem_id"], c["index"]): c["code"] for c in read_jsonl(root / "data/candidates/mutants.jsonl")}
    out = []
    for r in rows:
        (good,) = [(r["problem_id"], i) for i in r["candidates"] if passed[(r["problem_id"], i)]]
        (bad,) = [(r["problem_id"], i) for i in r["candidates"] if not passed[(r["problem_id"], i)]]
        out.append(1 if r["prompt"].index(codes[good].strip()) < r["prompt"].index(codes[bad].strip()) else 2)
    return out


def test_rerun_is_stable_and_served_from_cache(pairs_run, monkeypatch):
    root = pairs_run
    before = (root / "data/pairs/lower_scored.jsonl").read_text()
    metrics_before = json.loads((root / "metrics/pairs.json").read_text())
    monkeypatch.chdir(root)
    pairs_stage.main(load_config())
    assert (root / "data/pairs/lower_scored.jsonl").read_text() == before
    assert json.loads((root / "metrics/pairs.json").read_text()) == metrics_before  # results only
    run = json.loads((root / "logs/pairs.json").read_text())["lower"]["judge_cost"]
    assert run["model_calls"] == 0 and run["cache_hits"] == 12


def test_bad_params_fail_cleanly(tiny_model, tmp_path, monkeypatch):
    make_workspace(tmp_path, tiny_model, pairs__responses_per_pair=0)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DajError, match="pairs.responses_per_pair"):
        pairs_stage.main(load_config())
    assert not (tmp_path / "data/pairs").exists()


def test_forced_selection_on_the_hf_engine_takes_the_likeliest_index(tiny_engine):

    from daj.config import JudgeConfig
    from daj.data.humaneval import load_humaneval_package
    from daj.judge.prompt import build_messages
    from daj.judge.runner import JudgeRequest, JudgeRunner, force_prefix

    problem = load_humaneval_package()[2]
    chat = build_messages(problem, [problem["reference"], problem["prompt"] + "    return 0\n", problem["reference"]],
                          2000)
    engine = tiny_engine
    runner = JudgeRunner(engine, JudgeConfig(max_new_tokens=8, force_selection=True, force_sampling=False))
    [[resp]], stats = runner.respond([JudgeRequest(chat, 3, n=1, seed=3)])
    assert resp.forced and resp.raw_selection is None and stats.model_calls == 1
    scores = engine.score_continuations(chat, force_prefix(resp.raw_text), [f"{k}</selection>" for k in (1, 2, 3)])
    assert resp.selection == 1 + max(range(3), key=lambda i: scores[i])
    # selection only on the same engine: no generation, the tag alone, from the prompt's own scores
    runner = JudgeRunner(engine, JudgeConfig(mode="select", force_selection=False, force_sampling=False))
    [[resp]], stats = runner.respond([JudgeRequest(chat, 3, n=1, seed=3)])
    scores = engine.score_continuations(chat, "<selection>", [f"{k}</selection>" for k in (1, 2, 3)])
    assert resp.text == f"<selection>{1 + max(range(3), key=lambda i: scores[i])}</selection>"
    assert resp.prompt_tokens == engine.prompt_tokens(chat, "<selection>") and resp.completion_tokens == 0


def test_selection_only_pairs_one_scoring_per_prompt_and_no_duplicate_records(tiny_model, tmp_path, monkeypatch):
    make_workspace(tmp_path, tiny_model, judge__mode="select", pairs__responses_per_pair=6)
    monkeypatch.chdir(tmp_path)
    pairs_stage.main(load_config())
    m = json.loads((tmp_path / "metrics/pairs.json").read_text())["lower"]
    scored = read_jsonl(tmp_path / "data/pairs/lower_scored.jsonl")
    records = read_jsonl(tmp_path / "data/pairs/lower.jsonl")
    calls = json.loads((tmp_path / "logs/pairs.json").read_text())["lower"]["judge_cost"]["model_calls"]
    assert m["responses"] == 6 * m["prompts"] and calls == m["prompts"] and "model_calls" not in m["judge_cost"]
    assert {r["response"] for r in scored} == {"<selection>1</selection>", "<selection>2</selection>"}
    mixed = {g for g in {r["group"] for r in scored} if len({r["label"] for r in scored if r["group"] == g}) == 2}
    assert mixed and sorted(r["group"] for r in records) == sorted(mixed)  # one record per mixed group
    assert m["preference_records"] == len(records) == sum(d["preference_records"] for d in m["domains"].values())

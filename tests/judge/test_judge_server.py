"""The judge over real HTTP, configured only through params.yaml, and per-level trajectory models.

- `python -m daj.testing.openai_server` serves the tiny model in a subprocess; `judge.backend: openai` with
  `judge.base_url` / `judge.api_key_env` drives the pairs, bon and pairwise stages through it.
- A scripted judge (an engine double behind the same real HTTP server, in-process) writes valid and
  malformed answers; expected labels, rewards and records are computed here from the verdict files
  and the scripted meaning of each answer, not from the stage's own code.
- pairs.lower_trajectories / pairs.upper_trajectories: two different engines per level; the records
  say which one wrote each response, and a regenerated answer confirms it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml
from _judge_data import make_workspace

from daj.engines.base import Completion, SamplingParams
from daj.errors import DajError
from daj.hashing import stable_seed
from daj.io import read_jsonl
from daj.params import load_config, validate_params
from stages import pairs as pairs_stage

REPO = Path(__file__).resolve().parents[2]
LEVELS = {"correct": 2.0, "wrong": -0.5, "format_error": -3.0}  # not the defaults: a copy of them fails
# every answer the scripted judge writes, with the selection it means (None: a format error)
SCRIPT = {
    "Candidate 1 is right.\n<selection>1</selection>": 1,
    "Candidate 2 is right.\n<selection>2</selection>": 2,
    "There are only two, but <selection>3</selection>": None,              # out of range
    "I pick the second one: <selection>2": None,                          # no closing tag
    "```\n<selection>1</selection>\n```\nno answer outside the code": None,  # tag inside a code block
    "<selection>two</selection>": None,                                   # not a number
}


@pytest.fixture(scope="module")
def tiny_server(tiny_model):
    """`python -m daj.testing.openai_server` on the tiny model (a subprocess, real HTTP, an API key)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "daj.testing.openai_server", "--model", tiny_model, "--port", "0",
                             "--served-model-name", "tiny", "--api-key", "sekret", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving tiny at "), line
        yield line.split(" at ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class ScriptedJudge:
    """Answers the k-th sample of a prompt with SCRIPT entry (prompt seed + k) mod 6: every prompt
    asked 6 times gets every answer once."""

    name = "scripted"
    model = None  # no PEFT adapters (the server looks for them)

    def generate(self, prompts, params: SamplingParams, prefixes=None):
        texts = list(SCRIPT)
        return [[Completion(texts[(stable_seed(json.dumps(p)) + k) % len(texts)], "stop", 50, 8)
                 for k in range(params.n)] for p in prompts]

    def close(self):
        pass


@pytest.fixture(scope="module")
def scripted_server():
    from daj.testing.openai_server import make_server

    srv = make_server(ScriptedJudge(), "scripted", port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.url
    srv.shutdown()
    srv.server_close()


def set_params(root: Path, **sections) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def correct_positions(root: Path, rows: list[dict]) -> list[int]:
    """From the verdict and candidate files: the position (1 or 2) of the passing program, checked
    against the order the programs appear in the prompt."""
    passed = {(v["problem_id"], v["index"]): v["passed"] for v in read_jsonl(root / "data/verdicts/mutants.jsonl")}
    codes = {(c["problem_id"], c["index"]): c["code"] for c in read_jsonl(root / "data/candidates/mutants.jsonl")}
    out = []
    for r in rows:
        first, second = ((r["problem_id"], i) for i in r["candidates"])
        assert r["prompt"].index(codes[first].strip()) < r["prompt"].index(codes[second].strip())
        assert passed[first] != passed[second]
        out.append(1 if passed[first] else 2)
    return out


def expected_label(selection: int | None, position: int) -> str:
    return "format_error" if selection is None else ("correct" if selection == position else "wrong")


def test_malformed_answers_become_rejected_format_errors_end_to_end(tiny_model, tmp_path, monkeypatch, scripted_server):
    make_workspace(tmp_path, tiny_model, pairs__responses_per_pair=6)
    set_params(tmp_path, judge={"backend": "openai", "model": "scripted", "base_url": scripted_server,
                                "force_selection": False, "engine_options": {},
                                "tokenizer": tiny_model},  # renders the prompts
               reward=LEVELS)
    monkeypatch.chdir(tmp_path)
    pairs_stage.main(load_config())
    metrics = json.loads((tmp_path / "metrics/pairs.json").read_text())
    for split in ("lower", "upper"):
        scored = read_jsonl(tmp_path / f"data/pairs/{split}_scored.jsonl")
        records = read_jsonl(tmp_path / f"data/pairs/{split}.jsonl")
        positions = correct_positions(tmp_path, scored)
        labels = [expected_label(SCRIPT[r["response"]], pos) for r, pos in zip(scored, positions, strict=True)]
        assert [r["label"] for r in scored] == labels
        assert [r["reward"] for r in scored] == [LEVELS[label] for label in labels]
        assert [r["selection"] for r in scored] == [SCRIPT[r["response"]] for r in scored]
        assert not any(r["forced"] for r in scored) and {r["trajectory_model"] for r in scored} == {"judge"}
        # every group got each scripted answer once: one correct, one wrong, four format errors
        assert labels.count("format_error") == 4 * len(scored) // 6 and labels.count("correct") == len(scored) // 6
        expected = set()
        for group in {r["group"] for r in scored}:
            rows = [(r, lab) for r, lab in zip(scored, labels, strict=True) if r["group"] == group]
            expected |= {(group, c["response"], r["response"], lab) for c, cl in rows if cl == "correct"
                         for r, lab in rows if lab != "correct"}
        assert {(r["group"], r["chosen"], r["rejected"], r["rejected_label"]) for r in records} == expected
        assert sum(r["rejected_label"] == "format_error" for r in records) == 4 * len(records) // 5
        m = metrics[split]
        assert m["format_error_rate"] == pytest.approx(4 / 6) and m["raw_format_error_rate"] == pytest.approx(4 / 6)
        assert m["mean_reward"] == pytest.approx(sum(LEVELS[lab] for lab in labels) / len(labels))
        calls = json.loads((tmp_path / "logs/pairs.json").read_text())[split]["judge_cost"]["model_calls"]
        assert calls == m["prompts"] and m["forced_rate"] == 0


def test_judge_server_from_params_drives_pairs_bon_and_pairwise(tiny_model, tmp_path, monkeypatch, tiny_server):
    from stages import bon as bon_stage
    from stages import pairwise as pairwise_stage

    torch.set_num_threads(1)
    make_workspace(tmp_path, tiny_model, pairwise__max_pairs_per_problem=1)
    set_params(tmp_path, judge={"backend": "openai", "model": "tiny", "base_url": tiny_server,
                                "api_key_env": "DAJ_JUDGE_KEY", "force_selection": False, "max_new_tokens": 6,
                                "engine_options": {"max_retries": 0}, "tokenizer": tiny_model},
               bon={"scaling_judge": False, "rounds": 2})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAJ_JUDGE_KEY", "wrong")
    with pytest.raises(DajError, match="401"):  # the key really comes from judge.api_key_env
        pairs_stage.main(load_config())
    assert not (tmp_path / "data/pairs").exists()
    monkeypatch.setenv("DAJ_JUDGE_KEY", "sekret")
    pairs_stage.main(load_config())
    m = json.loads((tmp_path / "metrics/pairs.json").read_text())["lower"]
    calls = json.loads((tmp_path / "logs/pairs.json").read_text())["lower"]["judge_cost"]["model_calls"]
    assert calls == m["prompts"] == 12 and m["forced_rate"] == 0
    assert m["trajectory_models"] == [{"name": "judge", "backend": "openai", "model": "tiny", "adapter": None,
                                       "base_url": tiny_server}]
    assert m["judge_cost"]["completion_tokens"] > 0  # generated over HTTP by the tiny model
    bon_stage.main(load_config())
    cost = json.loads((tmp_path / "metrics/bon_cost.json").read_text())
    assert "judge" in json.loads((tmp_path / "metrics/bon.json").read_text())["mutants"]
    run = json.loads((tmp_path / "logs/bon.json").read_text())  # calls made this run: the run log
    assert json.dumps(run).count('"model_calls"') and '"model_calls"' not in json.dumps(cost) and any(
        r["judge_responses"] not in ("", "0", 0) for r in _csv(tmp_path / "metrics/bon_problems.csv")
        if r["method"] == "judge")
    pairwise_stage.main(load_config())
    base = json.loads((tmp_path / "metrics/pairwise.json").read_text())["judges"]["base"]
    assert base["n_prompts"] == 6 and base["forced_rate"] == 0


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_each_level_has_its_own_trajectory_models(tiny_model, tmp_path, monkeypatch, tiny_server, scripted_server):
    from daj.engines.hf import HFEngine
    from daj.models.tiny import build_tiny_model, humaneval_corpus

    torch.set_num_threads(1)
    other = tmp_path / "tiny_seed1"
    build_tiny_model(other, humaneval_corpus(), seed=1)  # a different cheap model
    make_workspace(tmp_path / "ws", tiny_model)
    root = tmp_path / "ws"
    lower = [{"name": "cheap_hf", "backend": "hf", "model": str(other), "device": "cpu", "batch_size": 1},
             {"name": "cheap_http", "backend": "openai", "model": "scripted", "base_url": scripted_server,
              "force_selection": False, "max_new_tokens": 64}]
    upper = ["judge", {"name": "strong_http", "backend": "openai", "model": "tiny", "base_url": tiny_server,
                       "api_key_env": "DAJ_JUDGE_KEY", "force_selection": False}]
    set_params(root, pairs={"lower_trajectories": lower, "upper_trajectories": upper})
    monkeypatch.chdir(root)
    monkeypatch.setenv("DAJ_JUDGE_KEY", "sekret")
    pairs_stage.main(load_config())
    metrics = json.loads((root / "metrics/pairs.json").read_text())
    run_log = json.loads((root / "logs/pairs.json").read_text())
    names = {"lower": ["cheap_hf", "cheap_http"], "upper": ["judge", "strong_http"]}
    for split in ("lower", "upper"):
        scored = read_jsonl(root / f"data/pairs/{split}_scored.jsonl")
        records = read_jsonl(root / f"data/pairs/{split}.jsonl")
        m = metrics[split]
        assert [t["name"] for t in m["trajectory_models"]] == names[split] and m["policies"] == ["mutants"]
        assert m["responses"] == len(scored) == 2 * 2 * m["prompts"]  # 2 models x 2 responses per prompt
        for name in names[split]:
            mine = [r for r in scored if r["trajectory_model"] == name]
            assert len(mine) == 2 * m["prompts"] == m["by_trajectory_model"][name]["responses"]
            # the cache is keyed on the trajectory model: each one was asked every prompt
            assert run_log[split]["by_trajectory_model"][name]["judge_cost"]["model_calls"] == m["prompts"]
        assert len({r["id"] for r in scored}) == len(scored)
        by_model = {r["id"]: r["trajectory_model"] for r in scored}
        for rec in records:  # a record pairs two responses of one trajectory model and says which
            chosen_id, rejected_k = rec["id"].split(">")
            assert by_model[chosen_id] == by_model[rec["group"] + "#" + rejected_k] == rec["trajectory_model"]
        assert sum(m["by_trajectory_model"][n]["preference_records"] for n in names[split]) == len(records)
    lower_rows = read_jsonl(root / "data/pairs/lower_scored.jsonl")
    upper_rows = read_jsonl(root / "data/pairs/upper_scored.jsonl")
    assert {r["response"] for r in lower_rows if r["trajectory_model"] == "cheap_http"} <= set(SCRIPT)
    assert all(r["forced"] for r in lower_rows + upper_rows if r["trajectory_model"] in ("cheap_hf", "judge"))
    assert not any(r["forced"] for r in upper_rows if r["trajectory_model"] == "strong_http")
    describe = {t["name"]: t for t in metrics["lower"]["trajectory_models"] + metrics["upper"]["trajectory_models"]}
    assert describe["cheap_http"]["settings"] == {"force_selection": False, "max_new_tokens": 64}
    assert describe["judge"]["model"] == tiny_model and describe["strong_http"]["base_url"] == tiny_server
    # provenance: regenerating a cheap_hf record's prompt with the seed-1 model gives its reasoning
    rec = next(r for r in read_jsonl(root / "data/pairs/lower.jsonl") if r["trajectory_model"] == "cheap_hf")
    judge = load_config().judge
    raw = HFEngine(str(other), device="cpu").generate([rec["messages"]], SamplingParams(
        n=2, temperature=judge.temperature, top_p=judge.top_p, top_k=judge.top_k,
        repetition_penalty=judge.repetition_penalty, max_new_tokens=judge.max_new_tokens, seed=0))[0]
    assert any(rec["chosen"].startswith(c.text.rstrip()) for c in raw)
    # a rerun is served from the cache, model by model
    pairs_stage.main(load_config())
    again = json.loads((root / "logs/pairs.json").read_text())
    assert all(again[s]["judge_cost"]["model_calls"] == 0 for s in ("lower", "upper"))
    assert json.loads((root / "metrics/pairs.json").read_text()) == metrics  # results: unchanged
    assert read_jsonl(root / "data/pairs/upper_scored.jsonl") == upper_rows


@pytest.mark.parametrize("value, field, message", [
    ("judge", "pairs.lower_trajectories", "valid list"),
    ([], "pairs.lower_trajectories", "expected null or a non-empty list"),
    ([3], "pairs.lower_trajectories[0]", "expected 'judge'"),
    ([{"backend": "hf", "model": "m"}], "pairs.lower_trajectories[0].name", "Field required"),
    ([{"name": "judge", "backend": "hf", "model": "m"}], "pairs.lower_trajectories[0].name", "reserved"),
    (["judge", "judge"], "pairs.lower_trajectories", "used twice"),
    ([{"name": "a", "backend": "hf"}], "pairs.lower_trajectories[0].model", "Field required"),
    ([{"name": "a", "backend": "tpu", "model": "m"}], "pairs.lower_trajectories[0].backend", "'hf', 'vllm' or"),
    ([{"name": "a", "backend": "hf", "model": "m", "base_url": "x"}], "pairs.lower_trajectories[0].base_url",
     "unknown option"),
    ([{"name": "a", "backend": "hf", "model": "m", "mode": "think"}], "pairs.lower_trajectories[0].mode",
     "'reason' or 'select'"),
    ([{"name": "a", "backend": "hf", "model": "m", "seed": -1}], "pairs.lower_trajectories[0].seed",
     "greater than or equal to 0"),
])
def test_bad_trajectory_models_name_the_key(value, field, message):
    from daj.judge.trajectories import parse_trajectories

    with pytest.raises(DajError, match=message) as err:  # refused by the typed params or by the engine check
        config = validate_params({"pairs": {"lower_trajectories": value}}, "params.yaml")
        parse_trajectories(config, "lower", "params.yaml")
    assert err.value.field == field and str(err.value).startswith("params.yaml")


def test_forced_selection_on_an_http_trajectory_model_is_refused_before_any_work(tiny_model, tmp_path, monkeypatch,
                                                                                 scripted_server):
    make_workspace(tmp_path, tiny_model)
    set_params(tmp_path, pairs={"upper_trajectories": [
        {"name": "strong", "backend": "openai", "model": "scripted", "base_url": scripted_server}]})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DajError, match="force_selection .*needs an engine that scores") as err:
        pairs_stage.main(load_config())
    assert err.value.field == "pairs.upper_trajectories[0].force_selection"
    assert not (tmp_path / "data/pairs").exists()


def test_engines_are_built_on_first_use_and_closed_after_their_last(monkeypatch):
    from daj.judge import trajectories

    events = []

    class Fake:
        def __init__(self, spec):
            self.name = spec["model"]
            events.append(f"open {self.name}")

        def score_continuations(self, prompt, prefix, options):
            return [0.0] * len(options)

        def close(self):
            events.append(f"close {self.name}")

    monkeypatch.setattr(trajectories, "make_named_engine", lambda spec: Fake(spec))
    spec = {"backend": "hf", "device": "cpu"}
    config = validate_params({"caches": {"judge": None}, "pairs": {
        "lower_trajectories": [{"name": "a", "model": "A", **spec}, {"name": "b", "model": "B", **spec}],
        "upper_trajectories": [{"name": "a2", "model": "A", **spec, "temperature": 0.1},
                               {"name": "c", "model": "C", **spec}]}})
    levels = {lv: trajectories.parse_trajectories(config, lv) for lv in ("lower", "upper")}
    runners = trajectories.TrajectoryRunners(config, levels)
    for level, models in levels.items():
        for m in models:
            runner = runners.runner(m)
            assert runner.settings.temperature == (0.1 if m.name == "a2" else 0.7)
            runners.release(level, m)
    # A serves a (lower) and a2 (upper, other settings): one engine, closed after a2
    assert events == ["open A", "open B", "close B", "close A", "open C", "close C"]

"""The paper's reward-model baselines (prm, grm) on tiny stand-ins: Skywork's step split, value heads loaded
from a checkpoint or seeded, a served value model, DeepSeek-GRM-style score parsing, caching, ties."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from daj.config import GrmConfig, PrmConfig
from daj.data.pools import PoolCandidate
from daj.engines.base import Completion
from daj.errors import DajError
from daj.eval.bon import best_score, evaluate_policy
from daj.eval.reward_models import (
    GrmScorer,
    PrmScorer,
    aggregate,
    grm_messages,
    parse_score,
    prm_input,
    sigmoid,
)

PROBLEM = {"id": "t/0", "title": "Add", "difficulty": "easy", "prompt": "def add(a, b):\n    \"\"\"Add.\"\"\"\n",
           "starter_code": "", "tests": {"type": "humaneval", "public": [{"input": "add(1, 2)", "output": "3"}]}}
GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n\n    return a - b\n\n"


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from daj.models.loading import load_tokenizer

    return load_tokenizer(tiny_model)


def test_prm_input_follows_skyworks_step_split(tokenizer):
    ids, ends = prm_input("Add two numbers.", BAD, tokenizer)
    sep = tokenizer.encode("\n", add_special_tokens=False)[-1]
    assert len(ends) == 2  # two non-blank lines: blank lines and the trailing newline are not steps
    assert all(ids[e] == sep for e in ends) and ends[-1] == len(ids) - 1
    text = tokenizer.decode(ids)
    assert text.startswith("Add two numbers.\n") and "return a - b" in text
    # each step's tokens are the line's own tokens followed by the separator
    prompt = tokenizer.encode("Add two numbers.\n", add_special_tokens=False)
    assert ids[len(prompt):ends[0] + 1] == tokenizer.encode("def add(a, b):", add_special_tokens=False) + [sep]
    long_code = "".join(f"x{i} = {i}\n" for i in range(200))
    full, full_ends = prm_input("S", long_code, tokenizer)
    cut, cut_ends = prm_input("S", long_code, tokenizer, max_tokens=120)
    head = len(tokenizer.encode("S\n", add_special_tokens=False))
    assert len(cut) <= 120 and len(cut_ends) < len(full_ends)
    assert cut[:head] == full[:head] and cut[head:] == full[len(full) - len(cut) + head:]  # the latest steps kept
    assert prm_input("S", "\n\n", tokenizer)[1] == []


def test_aggregations():
    r = [0.9, 0.2, 0.6]
    assert aggregate(r, "min") == 0.2 and aggregate(r, "last") == 0.6
    assert aggregate(r, "mean") == pytest.approx(17 / 30) and aggregate(r, "prod") == pytest.approx(0.108)
    assert aggregate([], "min") == 0.0
    assert sigmoid(0.0) == 0.5 and sigmoid(-800.0) == 0.0 and sigmoid(800.0) == 1.0


def manual_values(model_dir: str, weight: torch.Tensor, bias: torch.Tensor, ids: list[int]) -> list[float]:
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        hidden = lm.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    return (hidden @ weight[0] + bias[0]).tolist()


def test_value_head_read_from_the_checkpoint_or_seeded(tiny_model, tmp_path, tokenizer):
    import shutil

    from safetensors.torch import save_file

    from daj.engines.reward import HFValueModel

    prm_dir = tmp_path / "prm"
    shutil.copytree(tiny_model, prm_dir)
    with pytest.raises(DajError, match="random_head_seed"):
        HFValueModel(str(prm_dir))
    hidden = json.loads((prm_dir / "config.json").read_text())["hidden_size"]
    weight, bias = torch.randn(1, hidden, generator=torch.Generator().manual_seed(3)), torch.tensor([0.25])
    save_file({"v_head.summary.weight": weight, "v_head.summary.bias": bias}, str(prm_dir / "value_head.safetensors"))
    model = HFValueModel(str(prm_dir), batch_size=2)
    ids, _ = prm_input("Add two numbers.", GOOD, tokenizer)
    short = ids[:7]
    values = model.values([ids, short, ids])
    assert np.allclose(values[0], manual_values(str(prm_dir), weight, bias, ids), atol=1e-5)
    assert np.allclose(values[1], values[0][:7], atol=1e-5)  # right padding changes no value
    assert values[2] == values[0]
    seeded = [HFValueModel(tiny_model, random_head_seed=s).values([short])[0] for s in (0, 0, 1)]
    assert seeded[0] == seeded[1] and seeded[0] != seeded[2]
    assert "seed0" in HFValueModel(tiny_model, random_head_seed=0).name


class _Embeddings(BaseHTTPRequestHandler):
    """vLLM's /v1/embeddings for a PRM with ALL pooling: one value per input token (a real model behind it)."""

    model = None

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        rows = type(self).model.values(body["input"])
        data = json.dumps({"data": [{"index": i, "embedding": r} for i, r in enumerate(rows)]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_served_value_model_gives_the_local_values(tiny_model, tokenizer):
    from daj.engines.reward import HFValueModel, make_value_model

    local = HFValueModel(tiny_model, random_head_seed=0)
    _Embeddings.model = local
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        served = make_value_model("openai", "skywork-prm", tokenizer=tiny_model,
                                  base_url=f"http://127.0.0.1:{server.server_port}/v1")
        batch = [prm_input("Add.", code, tokenizer)[0] for code in (GOOD, BAD)]
        assert served.values(batch) == local.values(batch)
        assert served.name.startswith("openai:skywork-prm")
    finally:
        server.shutdown()


def test_prm_scorer_scores_and_caches(tiny_model, tmp_path):
    cfg = PrmConfig(model=tiny_model, random_head_seed=0, aggregation="mean")
    scorer = PrmScorer(cfg, str(tmp_path))
    result = scorer.score(PROBLEM, [GOOD, BAD, GOOD])
    rewards, _ = scorer.step_rewards(PROBLEM, [GOOD])
    assert result.scores[0] == pytest.approx(sum(rewards[0]) / len(rewards[0])) == result.scores[2]
    assert result.stats.model_calls == 2 and result.stats.responses == 3  # a repeated program is scored once
    again = PrmScorer(cfg, str(tmp_path)).score(PROBLEM, [GOOD, BAD, GOOD])  # a new process: the disk cache
    assert again.scores == result.scores and again.stats.model_calls == 0 and again.stats.cache_hits == 3
    other = PrmScorer(cfg.model_copy(update={"random_head_seed": 1}), str(tmp_path)).score(PROBLEM, [GOOD])
    assert other.stats.model_calls == 1 and other.scores[0] != result.scores[0]  # another head, another key


@pytest.mark.parametrize(("text", "score"), [
    ("Principles: ...\nCritique: fine.\nScore: \\boxed{7}", 7.0),
    ("\\boxed{3} at first, then on reflection \\boxed{ 8 }", 8.0),
    ("Final score: 6.5", 6.5),
    ("**Score**: 4", None),  # markdown around the label is not our format
    ("Scores: 9", 9.0),
    ("Score: \\boxed{11}", None), ("Score: \\boxed{0}", None),
    ("no score at all", None), ("", None), ("\\boxed{x}", None),
])
def test_parse_score(text, score):
    assert parse_score(text) == score


class ScoringGRM:
    """A generative RM double (no real GRM runs here): a critique ending with a score read off the code."""

    name = "scoring-grm"

    def __init__(self, table):
        self.table, self.prompts = table, 0

    def generate(self, prompts, params, prefixes=None):
        out = []
        for chat in prompts:
            self.prompts += 1
            code = chat[0]["content"].split("## Candidate\n```python\n", 1)[1]
            text = next((t for key, t in self.table.items() if key in code), "I cannot tell.")
            out.append([Completion(f"Principles: correctness.\n{text}", "stop", 40, 9)] * params.n)
        return out

    def close(self):
        pass


def grm_scorer(engine, tmp_path, samples=1, seed=0) -> GrmScorer:
    scorer = GrmScorer.__new__(GrmScorer)
    from daj.store import Store

    scorer.cfg, scorer.seed, scorer.engine = GrmConfig(samples=samples), seed, engine
    scorer.store = Store(str(tmp_path), "reward")
    return scorer


def test_grm_scores_unparsable_lowest_and_counted(tmp_path):
    engine = ScoringGRM({"a + b": "Score: \\boxed{9}", "a - b": "Score: \\boxed{2}"})
    scorer = grm_scorer(engine, tmp_path, samples=3)
    result = scorer.score(PROBLEM, [BAD, GOOD, "def add(a, b):\n    pass\n"])
    assert result.scores == [6.0, 27.0, 0.0] and result.unparsable == 3  # summed over 3 samples
    assert engine.prompts == 3 and result.stats.responses == 9
    assert grm_scorer(engine, tmp_path, samples=3).score(PROBLEM, [GOOD]).stats.model_calls == 0
    assert "## Candidate" in grm_messages(PROBLEM, GOOD, 6000)[0]["content"]
    assert [m["role"] for m in grm_messages(PROBLEM, GOOD, 6000)] == ["user"]


def test_best_score_breaks_ties_with_the_seed():
    assert best_score([0.1, 0.9, 0.3], np.random.default_rng(0)) == 1
    picks = {best_score([0.0, 0.0, 0.0, 0.0], np.random.default_rng(s)) for s in range(40)}
    assert picks == {0, 1, 2, 3}


def test_reward_methods_in_best_of_n(tmp_path):
    problems = [{**PROBLEM, "id": f"t/{i}"} for i in range(3)]
    unparsable = "def add(a, b):\n    pass\n"
    pools = {
        "t/0": [PoolCandidate("p", 0, BAD, False, True), PoolCandidate("p", 1, GOOD, True, True)],
        "t/1": [PoolCandidate("p", i, unparsable + f"# {i}\n", i == 2, True) for i in range(4)],  # all score 0
        "t/2": [PoolCandidate("p", 0, GOOD, True, True), PoolCandidate("p", 1, GOOD + "# again\n", True, True)],
    }
    engine = ScoringGRM({"a + b": "Score: \\boxed{9}", "a - b": "Score: \\boxed{2}"})

    def run(seed):
        return evaluate_policy("p", problems, pools, None, 8, seed, progress=False, methods=["random", "grm"],
                               scorers={"grm": grm_scorer(engine, tmp_path, seed=seed)}, bootstrap=200)

    res = run(0)
    rows = {r["problem_id"]: r for r in res.rows if r["method"] == "grm"}
    assert rows["t/0"]["picked"] == 1 and rows["t/0"]["scores"] == "2;9"
    assert rows["t/2"]["judge_skipped"] is True and rows["t/2"]["scores"] == ""  # unanimous: not scored
    assert res.summary["grm"]["unparsable"] == 4 and res.cost["methods"]["grm"]["unparsable"] == 4
    assert set(res.summary) == {"random", "grm"} and "ci95" in res.summary["grm"]
    tie_picks = {next(r["picked"] for r in run(s).rows if r["method"] == "grm" and r["problem_id"] == "t/1")
                 for s in range(12)}
    assert len(tie_picks) > 1  # t/1's four-way tie: decided by the seed
    assert run(5).rows == run(5).rows
    with pytest.raises(ValueError, match="prm"):
        evaluate_policy("p", problems, pools, None, 8, 0, progress=False, methods=["prm"])
    assert math.isfinite(res.summary["grm"]["overall"])

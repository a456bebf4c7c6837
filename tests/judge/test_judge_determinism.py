"""The judge stages reproduce themselves: byte-identical outputs from empty caches, the same outputs from
a partly warm cache, and decisions that a rounding change in the adapter does not redraw."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from _judge_data import make_workspace

from daj.params import load_config
from stages import bon as bon_stage
from stages import pairs as pairs_stage
from stages import pairwise as pairwise_stage

OUTPUTS = ("data/pairs", "metrics/pairs.json", "metrics/bon.json", "metrics/bon_problems.csv",
           "metrics/bon_cost.json", "metrics/pairwise.json")


def snapshot(root: Path) -> dict[str, bytes]:
    out = {}
    for rel in OUTPUTS:
        path = root / rel
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            out[str(f.relative_to(root))] = f.read_bytes()
    return out


def run(root: Path, monkeypatch, stages=(pairs_stage, bon_stage, pairwise_stage)) -> dict[str, bytes]:
    monkeypatch.chdir(root)
    for stage in stages:
        stage.main(load_config())
    return snapshot(root) if len(stages) == 3 else {}


@pytest.mark.slow
def test_judge_stages_twice_from_empty_caches_give_the_same_bytes(tiny_model, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    first, second = tmp_path / "a", tmp_path / "b"
    make_workspace(first, tiny_model, bon__scaling_judge=False)
    shutil.copytree(first, second)  # the same inputs, an empty cache of its own
    want = run(first, monkeypatch)
    assert not (second / ".cache").exists()
    assert run(second, monkeypatch) == want
    # and a third run on the first workspace's warm cache: nothing asked, the same bytes
    assert run(first, monkeypatch) == want


def test_a_partly_warm_cache_gives_the_cold_outputs(tiny_model, tmp_path, monkeypatch):
    """A cache filled by another run (one problem per split, so other chunk neighbours) answers those
    prompts as a cold run would have: the pairs outputs equal the cold run's."""
    torch.set_num_threads(1)
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    make_workspace(cold, tiny_model)
    make_workspace(warm, tiny_model, pairs__max_problems=1)
    run(warm, monkeypatch, (pairs_stage,))
    make_workspace(warm, tiny_model)  # the same params as the cold run, the cache kept
    run(warm, monkeypatch, (pairs_stage,))
    run(cold, monkeypatch, (pairs_stage,))
    for rel in ("data/pairs/lower_scored.jsonl", "data/pairs/upper_scored.jsonl", "metrics/pairs.json"):
        assert (warm / rel).read_bytes() == (cold / rel).read_bytes(), rel


def test_a_rounding_change_in_the_adapter_redraws_no_decision(tiny_model, tmp_path):
    """An adapter whose weights moved by 1e-7 (what a machine with other float kernels gives) has another
    content digest, hence another cache name; its forced draws use the same uniforms, so its selections
    stay those of the original adapter."""
    from daj.config import JudgeConfig
    from daj.data.humaneval import load_humaneval_package
    from daj.judge.prompt import build_messages
    from daj.judge.runner import JudgeRequest, JudgeRunner, make_named_engine
    from daj.models.loading import load_causal_lm
    from daj.train.lora import add_lora, save_adapter

    torch.set_num_threads(1)
    model, tok = load_causal_lm(tiny_model)
    peft = add_lora(model, r=4, alpha=8, targets=["q_proj", "v_proj"])
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.05)
    save_adapter(peft, tok, tmp_path / "a")
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.add_(1e-7)
    save_adapter(peft, tok, tmp_path / "b")
    problems = load_humaneval_package()[:6]
    requests = [JudgeRequest(build_messages(p, [p["reference"], p["prompt"] + "    return None\n"], 3000), 2,
                             n=4, seed=3) for p in problems]
    settings = JudgeConfig(max_new_tokens=6, force_selection=True, force_sampling=True, temperature=1.0)
    answers = {}
    for name in ("a", "b"):
        engine = make_named_engine({"backend": "hf", "model": tiny_model, "adapter": str(tmp_path / name),
                                    "device": "cpu"})
        answers[name] = JudgeRunner(engine, settings).respond(requests)[0]
        answers[name + "_engine"] = engine.name
    assert answers["a_engine"] != answers["b_engine"]  # two cache names: nothing is shared through the cache
    selections = {n: [[r.selection for r in rs] for rs in answers[n]] for n in ("a", "b")}
    assert selections["a"] == selections["b"]
    assert len({s for rs in selections["a"] for s in rs}) == 2  # varied answers: the check means something

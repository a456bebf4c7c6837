"""The train stage: every reweight x objective runs, outputs are loadable, runs resume, bad input fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from daj.errors import DajError
from daj.train.bilevel import TrainConfig
from daj.train.losses import OBJECTIVES
from daj.train.run import RunOptions, run, summary
from daj.train.synthetic import corpus, write_noisy_domain_data
from daj.train.weights import REWEIGHTS

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from daj.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("train")
    build_tiny_model(root / "model", corpus(), seed=0, vocab_size=400)
    write_noisy_domain_data(root / "pairs", n_per_domain=4, n_meta_per_domain=2)
    return root


def _opts(root: Path) -> RunOptions:
    return RunOptions(model=str(root / "model"), grpo_group=4, lora_r=4, lora_alpha=8)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_reweight_runs(assets, tmp_path, objective):
    for reweight in REWEIGHTS:
        cfg = TrainConfig(objective=objective, reweight=reweight, steps=2, grad_accum=1, meta_lr=0.1)
        res = run(cfg, _opts(assets), assets / "pairs", metrics_json=tmp_path / f"{reweight}.json", progress=False)
        s = json.loads((tmp_path / f"{reweight}.json").read_text())
        assert s["objective"] == objective and s["reweight"] == reweight and s["steps"] == 2
        for key in ("final_loss", "meta_loss", "meta_acc", "seconds_per_step", "peak_rss_mb"):
            assert isinstance(s[key], float) and s[key] == s[key], key
        assert ("domain_weights" in s) == (reweight == "domain")
        if reweight == "domain":
            w = s["domain_weights"]
            assert set(w) == {"alpha", "beta", "gamma"}
            assert sum(w.values()) / 3 == pytest.approx(1.0, abs=1e-5)
            assert max(abs(v - 1) for v in w.values()) > 1e-4  # the upper level moved them
        if reweight == "none":
            assert all(r["loss"] == pytest.approx(r["unweighted_loss"]) for r in res.history)
        if reweight == "instance_table":
            assert res.final["instance_spread"]["std"] > 0


def test_stage_cli_writes_adapter_metrics_and_plots(assets, tmp_path):
    """`python -m stages.train` with the repo's params.yaml defaults (reweight=domain, kto via overrides)."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["reweight"] = "domain"
    params["train"]["objective"] = "kto"
    params["judge"]["model"] = "models/tiny"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(assets / "pairs", tmp_path / "data" / "pairs")
    shutil.copytree(assets / "model", tmp_path / "models" / "tiny")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "stages.train"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads((tmp_path / "metrics" / "train.json").read_text())
    assert s["objective"] == "kto" and s["reweight"] == "domain" and s["steps"] == params["train"]["steps"]
    assert set(s["domain_weights"]) == {"alpha", "beta", "gamma"}
    for name in ("domain_weights.csv", "domain_weights.png", "losses.csv", "losses.png"):
        assert (tmp_path / "metrics" / "train" / "curves" / name).stat().st_size > 0
    rows = (tmp_path / "metrics" / "train" / "curves" / "domain_weights.csv").read_text().splitlines()
    assert rows[0] == "step,alpha,beta,gamma" and len(rows) == params["train"]["steps"] + 1
    assert (tmp_path / "models" / "ckpt" / "state.pt").exists()

    from daj.models.loading import load_causal_lm

    model, tok = load_causal_lm(str(tmp_path / "models" / "tiny"), adapter=str(tmp_path / "models" / "judge"))
    assert type(model).__name__.startswith("Peft")
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora and any(p.abs().sum() > 0 for p in lora)  # the adapter was trained (B starts at 0)
    assert tok.eos_token == "<|im_end|>"


def test_resume_continues_exactly(assets, tmp_path):
    def cfg(steps):
        return TrainConfig(objective="dpo", reweight="domain", steps=steps, grad_accum=2, meta_lr=0.1)

    straight = run(cfg(4), _opts(assets), assets / "pairs", ckpt_dir=tmp_path / "a", progress=False)
    run(cfg(2), _opts(assets), assets / "pairs", ckpt_dir=tmp_path / "b", progress=False)
    resumed = run(cfg(4), _opts(assets), assets / "pairs", ckpt_dir=tmp_path / "b", progress=False)
    assert [r["step"] for r in resumed.history] == [1, 2, 3, 4]
    a, b = summary(cfg(4), straight), summary(cfg(4), resumed)
    assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-5)
    for d, w in a["domain_weights"].items():
        assert b["domain_weights"][d] == pytest.approx(w, rel=1e-5)


def test_bad_pairs_file_names_file_line_field(assets, tmp_path):
    shutil.copytree(assets / "pairs", tmp_path / "pairs")
    lines = (tmp_path / "pairs" / "lower.jsonl").read_text().splitlines()
    row = json.loads(lines[2])
    row["chosen"] = 3
    lines[2] = json.dumps(row)
    (tmp_path / "pairs" / "lower.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DajError) as err:
        run(TrainConfig(steps=1), _opts(assets), tmp_path / "pairs", judge_out=tmp_path / "judge", progress=False)
    assert "lower.jsonl:3" in str(err.value) and "chosen" in str(err.value)
    assert not (tmp_path / "judge").exists()


def test_adapter_config_is_written_in_a_stable_order(tmp_path):
    """PEFT saves target_modules from a set (hash order); the saved file must not depend on it."""
    from daj.train.lora import canonicalise_adapter_config

    texts = []
    for order in (["v_proj", "q_proj", "down_proj"], ["down_proj", "v_proj", "q_proj"]):
        path = tmp_path / "adapter_config.json"
        path.write_text(json.dumps({"r": 32, "target_modules": order, "lora_alpha": 64}))
        canonicalise_adapter_config(path)
        texts.append(path.read_text())
    assert texts[0] == texts[1]
    assert json.loads(texts[0])["target_modules"] == ["down_proj", "q_proj", "v_proj"]


def test_reference_store_is_shared_across_runs_and_changes_nothing(assets, tmp_path):
    import dataclasses

    from daj.train.logprobs import TokenizedSeq
    from daj.train.refcache import ReferenceStore, model_key

    cfg = TrainConfig(objective="dpo", reweight="domain", steps=3, grad_accum=2, meta_lr=0.1)
    plain = summary(cfg, run(cfg, _opts(assets), assets / "pairs", progress=False))
    opts = dataclasses.replace(_opts(assets), ref_cache_dir=str(tmp_path / "ref"))
    first = summary(cfg, run(cfg, opts, assets / "pairs", progress=False))
    key = model_key(opts.model, opts.precision)
    store = ReferenceStore(tmp_path / "ref", key)
    stored = store._db.execute("SELECT COUNT(*) FROM ref").fetchone()[0]
    assert stored > 0
    second = summary(dataclasses.replace(cfg, reweight="none"), run(dataclasses.replace(cfg, reweight="none"), opts,
                                                                     assets / "pairs", progress=False))
    assert store._db.execute("SELECT COUNT(*) FROM ref").fetchone()[0] >= stored  # reused, added only new ones
    again = summary(cfg, run(cfg, opts, assets / "pairs", progress=False))
    for name in ("final_loss", "meta_loss", "meta_acc"):
        assert again[name] == first[name]  # identical whatever the store held
        assert first[name] == pytest.approx(plain[name], rel=1e-4, abs=1e-6)
    assert second["reweight"] == "none"
    # another base model (or precision) never reads these values; a torn value is recomputed
    seq = TokenizedSeq((1, 2, 3, 4), 2)
    store.put(seq, torch.tensor([-1.0, -2.0]))
    assert store.get(seq).tolist() == [-1.0, -2.0]
    assert ReferenceStore(tmp_path / "ref", key + "x").get(seq) is None
    assert store.get(TokenizedSeq((1, 2, 3, 4), 1)) is None
    assert model_key("no/such/model", "fp32") is None

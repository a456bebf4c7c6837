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

from daj.config import TrainConfig
from daj.train.losses import OBJECTIVES
from daj.train.run import run, timings
from daj.train.synthetic import corpus, write_noisy_domain_data
from daj.train.weights import REWEIGHTS

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from daj.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("train")
    build_tiny_model(root / "model", corpus(), seed=0, vocab_size=400)
    write_noisy_domain_data(root / "pairs", n_per_domain=4, n_meta_per_domain=2)
    return root


def _cfg(**kw) -> TrainConfig:
    """Small LoRA, groups of 4; everything else as the models' defaults unless given."""
    return TrainConfig(**{"grpo_group": 4, "lora_r": 4, "lora_alpha": 8, **kw})


def _run(cfg: TrainConfig, root: Path, reweight: str, pairs: Path | None = None, **kw):
    return run(cfg, pairs or root / "pairs", reweight=reweight, seed=0, model=str(root / "model"), progress=False, **kw)


def _sampler_factory():
    """The stage's online-GRPO sampler with the repo's judge settings, selection only (fast)."""
    from daj.params import load_config, with_overrides
    from daj.train.online import rollout_sampler_factory

    config = with_overrides(load_config(REPO / "params.yaml"), **{"judge.mode": "select", "judge.force_selection": True})
    return rollout_sampler_factory(config.judge, config.reward, config.train.rollout_adapter_dir)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_reweight_runs(assets, tmp_path, objective):
    factory = _sampler_factory() if objective == "grpo" else None
    for reweight in REWEIGHTS:
        cfg = _cfg(objective=objective, steps=2, grad_accum=1, meta_lr=0.1, batch_size=2 if objective == "grpo" else 1)
        res = _run(cfg, assets, reweight, metrics_json=tmp_path / f"{reweight}.json", sampler_factory=factory)
        s = json.loads((tmp_path / f"{reweight}.json").read_text())
        assert s["objective"] == objective and s["reweight"] == reweight and s["steps"] == 2
        assert s["optimizer_steps"] == 2
        for key in ("final_loss", "meta_loss", "meta_acc"):
            assert isinstance(s[key], float) and s[key] == s[key], key
        assert not {"seconds_per_step", "peak_rss_mb"} & set(s)  # timings stay out of the metrics
        assert timings(res)["seconds_per_step"] > 0 and timings(res)["peak_rss_mb"] > 0
        if objective == "grpo":  # online: a fresh group of 4 for each of 2 prompts at each of 2 steps
            assert [r["rollout_responses"] for r in res.history[1:]] == [8, 8]  # history[0]: before training
            assert s["rollouts"]["responses"] == 16
            assert s["meta_loss"] == pytest.approx(-s["meta_reward"], abs=1e-5)
            assert s["final_loss"] == pytest.approx(0.0, abs=1e-4)  # ratio 1, advantages sum to 0 per group
        else:
            assert s["final_loss"] > 0  # dpo, kto, orpo losses are positive
        if reweight != "none":
            assert any(r.get("hypergrad_norm", 0) > 0 for r in res.history)
        assert ("domain_weights" in s) == (reweight == "domain")
        if reweight == "domain":
            w = s["domain_weights"]
            assert set(w) == {"alpha", "beta", "gamma"}
            assert min(w.values()) >= 0  # projected onto >= 0, not renormalised
            assert max(abs(v - 1 / 3) for v in w.values()) > 1e-4  # the upper level moved them from 1/K
        if reweight == "none":
            assert all(r["loss"] == pytest.approx(r["unweighted_loss"]) for r in res.history[1:])
        if reweight == "instance_table":  # the table moved, and differently per instance
            assert res.final["instance_spread"]["std"] > 0
        if reweight == "instance_net":  # a function of the loss: the two steps' samples got different weights
            spreads = [r["instance_spread"] for r in res.history if "instance_spread" in r]
            assert len(spreads) == 2 and spreads[0]["p50"] != spreads[1]["p50"], spreads
            assert all(sp["min"] >= 0 for sp in spreads)


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
    n_opt = params["train"]["steps"] // params["train"]["grad_accum"]
    assert s["optimizer_steps"] == n_opt
    assert set(s["domain_weights"]) == {"alpha", "beta", "gamma"}
    for name in ("weights.csv", "weights.png", "losses.csv", "losses.png", "meta_eval.csv", "meta_eval.png"):
        assert (tmp_path / "metrics" / "train" / "curves" / name).stat().st_size > 0
    rows = [r.split(",") for r in (tmp_path / "metrics" / "train" / "curves" / "weights.csv").read_text().splitlines()]
    assert rows[0] == ["step", "series", "weight"] and len(rows) == 1 + 3 * (1 + n_opt)  # before training, steps
    first = {r[1]: float(r[2]) for r in rows[1:] if r[0] == "0"}
    assert set(first) == {"alpha", "beta", "gamma"} and all(abs(w - 1 / 3) < 1e-7 for w in first.values())
    assert max(int(r[0]) for r in rows[1:]) == params["train"]["steps"]  # x = lower iteration
    assert (tmp_path / "models" / "ckpt" / "state.pt").exists()

    from daj.models.loading import load_causal_lm

    model, tok = load_causal_lm(str(tmp_path / "models" / "tiny"), adapter=str(tmp_path / "models" / "judge"))
    assert type(model).__name__.startswith("Peft")
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora and any(p.abs().sum() > 0 for p in lora)  # the adapter was trained (B starts at 0)
    assert tok.eos_token == "<|im_end|>"


def _outputs(root: Path) -> dict[str, bytes]:
    """Every file a run wrote under `root` (adapter, metrics/train.json, curves), by relative path."""
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*"))
            if f.is_file() and "ckpt" not in f.parts}


def _write(root: Path) -> dict:
    return dict(judge_out=root / "judge", metrics_json=root / "train.json", metrics_dir=root / "train")


def test_resume_gives_the_bytes_of_a_straight_run(assets, tmp_path):
    def cfg(steps):
        return _cfg(objective="dpo", steps=steps, grad_accum=2, meta_lr=0.1)

    _run(cfg(8), assets, "domain", ckpt_dir=tmp_path / "a" / "ckpt", **_write(tmp_path / "a"))
    _run(cfg(4), assets, "domain", ckpt_dir=tmp_path / "b" / "ckpt", **_write(tmp_path / "b"))
    resumed = _run(cfg(8), assets, "domain", ckpt_dir=tmp_path / "b" / "ckpt", **_write(tmp_path / "b"))
    assert [r["step"] for r in resumed.history] == [0, 2, 4, 6, 8]  # lower iterations, 2 per optimizer step
    assert len([r for r in resumed.history if "seconds" in r]) == 4  # 2 checkpointed, 2 trained now
    a, b = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    assert set(a) >= {"judge/adapter_model.safetensors", "train.json", "train/curves/weights.csv"}
    assert a == b  # adapter, metrics and every curve (the resumed one holds all steps), byte for byte
    losses = (tmp_path / "b" / "train" / "curves" / "losses.csv").read_text().splitlines()
    assert sum(",lower loss (weighted)," in row for row in losses) == 4  # one row per optimizer step


def test_a_repeated_finished_run_equals_a_fresh_one(assets, tmp_path):
    """`dvc repro -f` after a complete run: the finished checkpoint is not resumed (0 steps, empty
    curves); the run trains again and writes the bytes of a fresh run."""
    cfg = _cfg(objective="dpo", steps=4, grad_accum=2, meta_lr=0.1)
    once = _run(cfg, assets, "instance_table", ckpt_dir=tmp_path / "ckpt", **_write(tmp_path))
    first = _outputs(tmp_path)
    again = _run(cfg, assets, "instance_table", ckpt_dir=tmp_path / "ckpt", **_write(tmp_path))
    assert [r["step"] for r in again.history] == [0, 2, 4]
    # it trained again (new timings), rather than replaying the finished checkpoint's history
    assert [r.get("seconds") for r in again.history] != [r.get("seconds") for r in once.history]
    assert _outputs(tmp_path) == first
    assert "median" in (tmp_path / "train" / "curves" / "weights.csv").read_text()


def test_outputs_do_not_depend_on_the_reference_cache(assets, tmp_path):
    """Issue 22: a fresh clone (no .cache/train_ref) and a warm checkout give the same bytes: the
    adapter, metrics/train.json and the curves are identical with no store, a cold one and a warm one."""
    from daj.train.refcache import ReferenceStore, model_key

    cfg = _cfg(objective="dpo", steps=6, grad_accum=2, meta_lr=0.1)
    store_dir = tmp_path / "ref"
    _run(cfg, assets, "domain", **_write(tmp_path / "none"))
    _run(cfg, assets, "domain", ref_cache_dir=str(store_dir), **_write(tmp_path / "cold"))
    stored = len(ReferenceStore(store_dir, "any"))
    assert stored > 0
    _run(cfg, assets, "domain", ref_cache_dir=str(store_dir), **_write(tmp_path / "warm"))
    assert len(ReferenceStore(store_dir, "any")) == stored  # every value came from the store
    none, cold, warm = (_outputs(tmp_path / k) for k in ("none", "cold", "warm"))
    assert "judge/adapter_model.safetensors" in none and "train.json" in none
    assert none == cold == warm
    # another run that shares the store (another reweighting) reads the same values
    _run(cfg, assets, "none", ref_cache_dir=str(store_dir), **_write(tmp_path / "other"))
    assert len(ReferenceStore(store_dir, "any")) == stored
    key = model_key(str(assets / "model"), "fp32")
    assert key is not None and model_key(str(assets / "model"), "bf16") != key
    assert model_key("no/such/model", "fp32") is None


def test_reference_store_keys(tmp_path):
    """Another base model, precision, temperature or response start never reads a value; a torn value
    is recomputed."""
    from daj.train.logprobs import TokenizedSeq
    from daj.train.refcache import ReferenceStore

    store = ReferenceStore(tmp_path / "ref", "model-a")
    seq = TokenizedSeq((1, 2, 3, 4), 2)
    store.put(seq, torch.tensor([-1.0, -2.0]))
    assert store.get(seq).tolist() == [-1.0, -2.0]
    assert ReferenceStore(tmp_path / "ref", "model-b").get(seq) is None
    assert store.get(seq, temperature=0.7) is None
    assert store.get(TokenizedSeq((1, 2, 3, 4), 1)) is None
    store.put(TokenizedSeq((5, 6, 7), 1), torch.tensor([-1.0]))  # 1 value for 2 response tokens: torn
    assert store.get(TokenizedSeq((5, 6, 7), 1)) is None


def test_dvc_plots_read_every_curve_file(assets, tmp_path):
    """Every curve file is long plot data DVC reads with x = step and a named series per line, no empty
    cell; the instance weights' spread moves (min and max leave 1) and the meta loss is a line."""
    cfg = _cfg(objective="dpo", steps=2, grad_accum=1, meta_lr=0.1)
    _run(cfg, assets, "instance_table", metrics_dir=tmp_path / "metrics" / "train")
    assert (tmp_path / "metrics" / "train" / "instance_weights.json").exists()
    curves = tmp_path / "metrics" / "train" / "curves"
    assert sorted(f.name for f in curves.glob("*.csv")) == ["losses.csv", "meta_eval.csv", "weights.csv"]
    for f in curves.glob("*.csv"):
        lines = [line.split(",") for line in f.read_text().splitlines()]
        assert lines[0][:2] == ["step", "series"] and all(len(r) == 3 and all(r) for r in lines), f.name
    (tmp_path / "dvc.yaml").write_text(
        "plots:\n"
        "  - Losses:\n      template: linear\n      x: step\n      y:\n        metrics/train/curves/losses.csv: value\n"
        "  - Weights:\n      template: linear\n      x: step\n      y:\n        metrics/train/curves/weights.csv: weight\n")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(dvc + ["init", "--no-scm", "-q"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    proc = subprocess.run(dvc + ["plots", "show", "--json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert "errors" not in shown, shown.get("errors")
    weights = shown["data"]["Weights"][0]["content"]["data"]["values"]
    spread = {(r["series"], r["step"]): float(r["weight"]) for r in weights}
    assert {s for s, _ in spread} == {"min", "5th percentile", "25th percentile", "median", "75th percentile",
                                      "95th percentile", "max"}
    assert spread[("min", "0")] == spread[("max", "0")] == 1.0
    assert spread[("min", "2")] < 1 or spread[("max", "2")] > 1  # the meta level moved some instance
    losses = shown["data"]["Losses"][0]["content"]["data"]["values"]
    assert sorted({r["step"] for r in losses if r["series"] == "meta loss (all upper units)"}) == ["0", "2"]

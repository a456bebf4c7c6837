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
from daj.train.run import RunOptions, run, summary, timings
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


def _opts(root: Path) -> RunOptions:
    return RunOptions(model=str(root / "model"), grpo_group=4, lora_r=4, lora_alpha=8)


def _sampler_factory():
    """The stage's online-GRPO sampler with the repo's judge settings, selection only (fast)."""
    from daj.params import load_config, with_overrides
    from stages.train import rollout_sampler_factory

    return rollout_sampler_factory(with_overrides(load_config(REPO / "params.yaml"),
                                                  **{"judge.mode": "select", "judge.force_selection": True}))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_reweight_runs(assets, tmp_path, objective):
    factory = _sampler_factory() if objective == "grpo" else None
    for reweight in REWEIGHTS:
        cfg = TrainConfig(objective=objective, reweight=reweight, steps=2, grad_accum=1, meta_lr=0.1,
                          batch_size=2 if objective == "grpo" else 1)
        res = run(cfg, _opts(assets), assets / "pairs", metrics_json=tmp_path / f"{reweight}.json", progress=False,
                  sampler_factory=factory)
        s = json.loads((tmp_path / f"{reweight}.json").read_text())
        assert s["objective"] == objective and s["reweight"] == reweight and s["steps"] == 2
        assert s["optimizer_steps"] == 2
        for key in ("final_loss", "meta_loss", "meta_acc"):
            assert isinstance(s[key], float) and s[key] == s[key], key
        assert not {"seconds_per_step", "peak_rss_mb"} & set(s)  # timings stay out of the metrics
        assert timings(res)["seconds_per_step"] > 0 and timings(res)["peak_rss_mb"] > 0
        if objective == "grpo":  # online: a fresh group of 4 for each of 2 prompts at each of 2 steps
            assert [r["rollout_responses"] for r in res.history] == [8, 8]
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
            assert sum(w.values()) / 3 == pytest.approx(1.0, abs=1e-5)
            assert max(abs(v - 1) for v in w.values()) > 1e-4  # the upper level moved them
        if reweight == "none":
            assert all(r["loss"] == pytest.approx(r["unweighted_loss"]) for r in res.history)
        if reweight == "instance_table":  # the table moved, and differently per instance
            assert res.final["instance_spread"]["std"] > 0
        if reweight == "instance_net":  # the net's weights of the last step's samples moved off 1
            spread = res.final["instance_spread"]
            assert max(abs(spread["min"] - 1), abs(spread["max"] - 1)) > 1e-4, spread


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
    for name in ("domain_weights.csv", "domain_weights.png", "losses.csv", "losses.png"):
        assert (tmp_path / "metrics" / "train" / "curves" / name).stat().st_size > 0
    rows = (tmp_path / "metrics" / "train" / "curves" / "domain_weights.csv").read_text().splitlines()
    assert rows[0] == "step,alpha,beta,gamma" and len(rows) == n_opt + 1
    assert rows[-1].split(",")[0] == str(params["train"]["steps"])  # x = lower iteration
    assert (tmp_path / "models" / "ckpt" / "state.pt").exists()

    from daj.models.loading import load_causal_lm

    model, tok = load_causal_lm(str(tmp_path / "models" / "tiny"), adapter=str(tmp_path / "models" / "judge"))
    assert type(model).__name__.startswith("Peft")
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora and any(p.abs().sum() > 0 for p in lora)  # the adapter was trained (B starts at 0)
    assert tok.eos_token == "<|im_end|>"


def _curves(metrics_dir: Path) -> dict[str, str]:
    """Every plot file a run leaves (dvclive's step logs and our CSVs), by relative path; timings out."""
    out = {}
    for f in sorted(metrics_dir.rglob("*")):
        if f.is_file() and f.suffix in (".tsv", ".csv") and "seconds" not in f.name:
            rows = [",".join(c for i, c in enumerate(line.replace("\t", ",").split(",")) if i != 1 or "timestamp" not in
                             line) for line in f.read_text().splitlines()]
            out[str(f.relative_to(metrics_dir))] = rows
    return out


def _no_timings(s: dict) -> dict:
    return {k: v for k, v in s.items() if k not in ("seconds_per_step", "peak_rss_mb", "peak_gpu_mb")}


def test_resume_continues_exactly(assets, tmp_path):
    def cfg(steps):
        return TrainConfig(objective="dpo", reweight="domain", steps=steps, grad_accum=2, meta_lr=0.1)

    straight = run(cfg(8), _opts(assets), assets / "pairs", ckpt_dir=tmp_path / "a", progress=False,
                   metrics_dir=tmp_path / "ma")
    run(cfg(4), _opts(assets), assets / "pairs", ckpt_dir=tmp_path / "b", progress=False, metrics_dir=tmp_path / "mb")
    resumed = run(cfg(8), _opts(assets), assets / "pairs", ckpt_dir=tmp_path / "b", progress=False,
                  metrics_dir=tmp_path / "mb")
    assert [r["step"] for r in resumed.history] == [2, 4, 6, 8]  # lower iterations, 2 per optimizer step
    a, b = summary(cfg(8), straight), summary(cfg(8), resumed)
    assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-5)
    for d, w in a["domain_weights"].items():
        assert b["domain_weights"][d] == pytest.approx(w, rel=1e-5)
    # the resumed run's curves hold every step, like the straight run's (dvclive logs included)
    ca, cb = _curves(tmp_path / "ma"), _curves(tmp_path / "mb")
    assert set(ca) == set(cb) and any(k.endswith(".tsv") for k in ca)
    evals = ("meta_loss", "meta_acc", "meta_reward_acc", "losses.csv")  # the first run also evaluated at its end
    for name in ca:
        if not any(e in name for e in evals):
            assert len(ca[name]) == len(cb[name]) == 5, name  # header + 4 optimizer steps


def test_a_repeated_finished_run_equals_a_fresh_one(assets, tmp_path):
    """`dvc repro -f` after a complete run: the finished checkpoint is not resumed (0 steps, empty
    curves); the run trains again and writes the metrics and curves of a fresh run."""
    cfg = TrainConfig(objective="dpo", reweight="instance_table", steps=4, grad_accum=2, meta_lr=0.1)
    kw = dict(ckpt_dir=tmp_path / "ckpt", metrics_dir=tmp_path / "m", metrics_json=tmp_path / "train.json",
              progress=False)
    once = run(cfg, _opts(assets), assets / "pairs", **kw)
    first, curves = json.loads((tmp_path / "train.json").read_text()), _curves(tmp_path / "m")
    again = run(cfg, _opts(assets), assets / "pairs", **kw)
    assert [r["step"] for r in again.history] == [2, 4]
    # it trained again (new timings), rather than replaying the finished checkpoint's history
    assert [r["seconds"] for r in again.history] != [r["seconds"] for r in once.history]
    assert _no_timings(json.loads((tmp_path / "train.json").read_text())) == _no_timings(first)
    assert _curves(tmp_path / "m") == curves
    assert (tmp_path / "m" / "curves" / "instance_weights.csv").exists()


def test_dvc_plots_read_every_curve_file(assets, tmp_path):
    """dvc.yaml plots the whole curves folder with x = step: every file there must be plot data
    (the per-instance weights mapping used to sit there and broke `dvc plots show`)."""
    cfg = TrainConfig(objective="dpo", reweight="instance_table", steps=2, grad_accum=1, meta_lr=0.1)
    run(cfg, _opts(assets), assets / "pairs", metrics_dir=tmp_path / "metrics" / "train", progress=False)
    assert (tmp_path / "metrics" / "train" / "instance_weights.json").exists()
    (tmp_path / "dvc.yaml").write_text("plots:\n  - metrics/train/curves:\n      x: step\n")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(dvc + ["init", "--no-scm", "-q"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    proc = subprocess.run(dvc + ["plots", "show", "--json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert "errors" not in shown, shown.get("errors")
    rows = shown["data"]["metrics/train/curves/instance_weights.csv"][0]["content"]["data"]["values"]
    assert [r["step"] for r in rows] == ["1", "2"] and all("p50" in r for r in rows)


def test_bad_pairs_file_names_file_line_field(assets, tmp_path):
    shutil.copytree(assets / "pairs", tmp_path / "pairs")
    lines = (tmp_path / "pairs" / "lower.jsonl").read_text().splitlines()
    row = json.loads(lines[2])
    row["chosen"] = 3
    lines[2] = json.dumps(row)
    (tmp_path / "pairs" / "lower.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DajError) as err:
        run(TrainConfig(steps=2), _opts(assets), tmp_path / "pairs", judge_out=tmp_path / "judge", progress=False)
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

    cfg = TrainConfig(objective="dpo", reweight="domain", steps=6, grad_accum=2, meta_lr=0.1)
    plain = summary(cfg, run(cfg, _opts(assets), assets / "pairs", progress=False))
    opts = dataclasses.replace(_opts(assets), ref_cache_dir=str(tmp_path / "ref"))
    first = summary(cfg, run(cfg, opts, assets / "pairs", progress=False))
    key = model_key(opts.model, opts.precision)
    store = ReferenceStore(tmp_path / "ref", key)
    stored = len(store)
    assert stored > 0
    second = summary(dataclasses.replace(cfg, reweight="none"), run(dataclasses.replace(cfg, reweight="none"), opts,
                                                                     assets / "pairs", progress=False))
    assert len(store) >= stored  # reused, added only new ones
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

"""Online GRPO: groups are drawn from the CURRENT judge (adapter) before each step, through the engine
interface; the group size is honoured; rewards are the verifiable reward; every reweighting runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from daj.config import ParamsConfig
from daj.errors import DajError
from daj.params import load_config, with_overrides
from daj.train.data import domains_of, read_scored
from daj.train.rollouts import PromptData, Rollout, RolloutStream
from daj.train.synthetic import corpus, write_noisy_domain_data

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def judge_params(train: dict | None = None, reward: dict | None = None, **judge) -> ParamsConfig:
    """The repo's params.yaml with judge.* (and train.*, reward) overrides, validated (what stages/train.py
    reads)."""
    overrides: dict = {f"judge.{k}": v for k, v in judge.items()}
    overrides.update({f"train.{k}": v for k, v in (train or {}).items()})
    if reward is not None:
        overrides["reward"] = reward
    return with_overrides(load_config(REPO / "params.yaml"), **overrides)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from daj.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("grpo")
    build_tiny_model(root / "model", corpus(), seed=0, vocab_size=400)
    write_noisy_domain_data(root / "pairs", n_per_domain=2, n_meta_per_domain=1)
    return root


def _model(root):
    from daj.models.loading import load_causal_lm
    from daj.train.lora import add_lora

    model, tok = load_causal_lm(str(root / "model"))
    return add_lora(model, 4, 8, ["q_proj", "v_proj", "o_proj"], seed=0), tok


def _factory(params: ParamsConfig):
    """The stage's sampler factory (daj.train.online) for these params."""
    from daj.train.online import rollout_sampler_factory

    return rollout_sampler_factory(params.judge, params.reward, params.train.rollout_adapter_dir)


def _stream(root, model, tok, params: ParamsConfig, group: int = 4, kl: bool = False) -> RolloutStream:
    rows = read_scored(root / "pairs" / "lower_scored.jsonl")
    data = PromptData(tok, 256, rows, domains_of(rows))
    return RolloutStream(data, _factory(params)(model, tok), model, batch_size=2, group=group, seed=0,
                         with_reference=kl, temperature=params.judge.temperature)


def _update(model, batch) -> None:
    """One real GRPO optimizer step on the batch (Adam, a large rate so the tiny policy moves)."""
    from daj.train.losses import GRPO

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    GRPO().per_sample(model, batch).mean().backward()
    opt.step()


def test_rollouts_come_from_the_current_adapter(assets):
    model, tok = _model(assets)
    stream = _stream(assets, model, tok, judge_params(max_new_tokens=12, force_selection=True))
    units = [0, 1]
    first = stream.make_batch(units, seed=7)
    again = stream.make_batch(units, seed=7)
    assert first["texts"] == again["texts"]  # same weights, same seed: the same group
    assert len(first["texts"]) == 2 * 4 and first["seq"]["input_ids"].shape[0] == 8
    assert torch.allclose(first["old_token_logps"], again["old_token_logps"])
    other = stream.make_batch(units, seed=8)
    assert other["texts"] != first["texts"]  # a new seed draws a fresh group
    # one real GRPO optimizer step, on a group whose rewards differ (else the policy gradient is 0)
    batch = next(b for b in (stream.make_batch(units, seed=s) for s in range(20)) if b["advantages"].abs().sum() > 0)
    _update(model, batch)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    after = stream.make_batch(units, seed=7)
    assert after["texts"] != first["texts"]  # same seed, new weights: different responses
    # old log-probs are those of the sampling (current) policy, not of the reference
    with model.disable_adapter(), torch.no_grad():
        from daj.train.logprobs import token_logps

        ref, _ = token_logps(model, after["seq"])
    assert not torch.allclose(ref, after["old_token_logps"], atol=1e-4)


def test_selection_only_draws_from_the_current_option_probabilities(assets):
    from daj.engines.live import LiveEngine, rendered

    model, tok = _model(assets)
    rows = read_scored(assets / "pairs" / "lower_scored.jsonl")
    engine = LiveEngine(model, tok)
    before = engine.score_continuations(rendered(rows[0]["prompt"]), "<selection>", ["1</selection>", "2</selection>"])
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(0.5 * torch.randn_like(p))
    after = engine.score_continuations(rendered(rows[0]["prompt"]), "<selection>", ["1</selection>", "2</selection>"])
    assert max(abs(a - b) for a, b in zip(before, after, strict=True)) > 1e-3
    assert model.training  # the engine restored the trainer's mode

    stream = _stream(assets, model, tok, judge_params(mode="select", force_selection=True))
    batch = stream.make_batch([0, 1, 2], seed=3)
    assert set(batch["texts"]) <= {"<selection>1</selection>", "<selection>2</selection>"}
    # rewards are the three-level verifiable reward of the selection against correct_position
    data = stream.data
    for i, (text, reward) in enumerate(zip(batch["texts"], batch["rewards"].tolist(), strict=True)):
        row = data.rows[[0, 1, 2][i // 4]]
        assert reward == (1.0 if text == f"<selection>{row['correct_position']}</selection>" else 0.0)
    # advantages are normalised per group
    adv = batch["advantages"].view(3, 4)
    rew = batch["rewards"].view(3, 4).double()
    for g in range(3):
        if rew[g].std() > 0:
            expected = (rew[g] - rew[g].mean()) / (rew[g].std() + 1e-4)
            assert torch.allclose(adv[g].double(), expected, atol=1e-5)
        else:
            assert torch.all(adv[g] == 0)


def test_format_errors_get_the_format_error_reward(assets):
    """Without forced selection the tiny judge rarely writes a valid tag: the reward of `reward`."""
    model, tok = _model(assets)
    stream = _stream(assets, model, tok, judge_params(max_new_tokens=6, force_selection=False,
                                                       reward={"correct": 2.0, "wrong": 0.5, "format_error": -3.0}))
    batch = stream.make_batch([0, 1], seed=1)
    from daj.judge.parse import parse_selection

    for text, reward in zip(batch["texts"], batch["rewards"].tolist(), strict=True):
        if parse_selection(text, 2) is None:
            assert reward == -3.0
        else:
            assert reward in (2.0, 0.5)
    assert -3.0 in batch["rewards"].tolist()


def test_group_size_is_honoured_or_the_run_fails(assets):
    model, tok = _model(assets)
    stream = _stream(assets, model, tok, judge_params(max_new_tokens=4), group=3)
    assert stream.make_batch([0], seed=0)["rewards"].numel() == 3

    def short(rows, n, seed, version):
        return [[Rollout("x", 0.0, "wrong")] * (n - 1) for _ in rows]

    stream.sampler = short
    with pytest.raises(DajError) as err:
        stream.make_batch([0], seed=0)
    assert err.value.field == "train.grpo_group"

    # offline GRPO takes groups of train.grpo_group from the file: a bigger group than the file has fails
    from daj.train.data import PreferenceData

    rows = read_scored(assets / "pairs" / "lower_scored.jsonl")
    with pytest.raises(DajError) as err:
        PreferenceData("grpo", tok, 256, rows, domains_of(rows), grpo_group=16)
    assert err.value.field == "train.grpo_group"
    data = PreferenceData("grpo", tok, 256, rows, domains_of(rows), grpo_group=3)
    assert all(len(u.seqs) == 3 for u in data.units)


def test_every_reweighting_trains_online_grpo_and_logs_rollouts(assets, tmp_path):
    from daj.config import TrainConfig
    from daj.train.run import run
    from daj.train.weights import REWEIGHTS

    params = judge_params(mode="select", force_selection=True)
    factory = _factory(params)
    assert params.train.grpo_mode == "online"
    for reweight in REWEIGHTS:
        cfg = TrainConfig(**{**params.train.model_dump(), **dict(objective="grpo", steps=4, grad_accum=2, lr=0.02,
                                                                 meta_lr=0.5, batch_size=2, meta_batch_size=3,
                                                                 grpo_group=4, lora_r=4, lora_alpha=8)})
        res = run(cfg, assets / "pairs", reweight=reweight, seed=0, model=str(assets / "model"),
                  temperature=params.judge.temperature, metrics_json=tmp_path / "m.json",
                  metrics_dir=tmp_path / reweight, progress=False, sampler_factory=factory)
        s = json.loads((tmp_path / "m.json").read_text())
        # rollouts were drawn at every optimizer step (grad_accum micro-batches x group each)
        assert s["rollouts"]["optimizer_steps_with_rollouts"] == 2
        assert s["rollouts"]["responses"] == 4 * 2 * 4  # iterations x prompts per micro-batch x group
        assert [r["rollout_responses"] for r in res.history[1:]] == [16, 16]  # history[0]: before training
        assert all(-1.0 <= r["rollout_reward"] <= 1.0 for r in res.history[1:])
        # meta loss = minus the meta groups' mean reward (the surrogate is 0 at ratio 1)
        assert s["meta_loss"] == pytest.approx(-s["meta_reward"], abs=1e-5)
        meta = [row.split(",") for row in (tmp_path / reweight / "curves" / "meta_eval.csv").read_text().splitlines()]
        assert sum(r[1] == "rollouts' mean reward" for r in meta) == 2  # each optimizer step
        assert sorted(r[0] for r in meta if r[1] == "meta groups' mean reward") == ["0", "4"]  # before and at the end
        if reweight == "domain":
            w = s["domain_weights"]
            assert max(abs(v - 1 / 3) for v in w.values()) > 1e-4  # the meta level moved them from 1/K
        if reweight == "instance_table":
            assert res.final["instance_spread"]["std"] > 0
            ids = json.loads((tmp_path / reweight / "instance_weights.json").read_text())
            assert len(ids) == len({r["group"] for r in read_scored(assets / "pairs" / "lower_scored.jsonl")})
        if reweight == "instance_net":
            assert any(r.get("hypergrad_norm", 0) > 0 for r in res.history)  # the hypergradient reached the net
        if reweight == "none":
            assert all(r["loss"] == pytest.approx(r["unweighted_loss"]) for r in res.history[1:])


def test_online_grpo_needs_a_sampler(assets):
    from daj.config import TrainConfig
    from daj.train.run import run

    with pytest.raises(DajError) as err:
        run(TrainConfig(objective="grpo", steps=2, grad_accum=1, grpo_group=4, lora_r=4, lora_alpha=8),
            assets / "pairs", reweight="none", seed=0, model=str(assets / "model"), progress=False)
    assert err.value.field == "train.grpo_mode"


def test_grpo_kl_uses_the_reference_and_old_policy(assets):
    """With train.grpo_kl the batch carries the reference (adapter off) beside the sampling policy."""
    model, tok = _model(assets)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(0.3 * torch.randn_like(p))
    stream = _stream(assets, model, tok, judge_params(max_new_tokens=4), kl=True)
    batch = stream.make_batch([0], seed=0)
    assert not torch.allclose(batch["ref_token_logps"], batch["old_token_logps"], atol=1e-4)
    from daj.train.losses import GRPO

    plain = GRPO(grpo_kl=0.0).per_sample(model, copy.deepcopy(batch)).detach()
    with_kl = GRPO(grpo_kl=0.5).per_sample(model, batch).detach()
    assert torch.all(with_kl > plain)  # k3 >= 0, and > 0 where the policy left the reference


def test_server_rollouts_push_the_current_adapter(assets, tmp_path):
    """judge.backend openai, against our own OpenAI-compatible server with vLLM's runtime adapter routes
    (daj.testing.openai_server --enable-lora; vLLM cannot be installed here): after each optimizer step the
    adapter is saved, the old one unloaded and the new one loaded, and requests name it; new weights
    give new responses."""
    import threading

    from daj.engines.hf import HFEngine
    from daj.testing.openai_server import make_server

    server = make_server(HFEngine(str(assets / "model"), batch_size=1), "base", port=0, enable_lora=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        params = judge_params(backend="openai", base_url=server.url, max_new_tokens=8, force_selection=False,
                              mode="reason", train={"rollout_adapter_dir": str(tmp_path / "adapters")})
        model, tok = _model(assets)
        rows = [dict(r, messages=[{"role": "user", "content": r["prompt"]}])
                for r in read_scored(assets / "pairs" / "lower_scored.jsonl")[:8:4]]
        sample = _factory(params)(model, tok)
        first = sample(rows, 3, 0, 0)
        assert [len(g) for g in first] == [3, 3]
        assert set(server.loras) == {"daj-judge-v0"}
        assert sample(rows, 3, 0, 0) == first  # same adapter version, same seed: the same group
        with torch.no_grad():  # an optimizer step's worth of change
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.add_(0.5 * torch.randn_like(p))
        second = sample(rows, 3, 0, 1)
        assert set(server.loras) == {"daj-judge-v1"}  # the old adapter was unloaded
        assert [r.text for g in second for r in g] != [r.text for g in first for r in g]
        assert (tmp_path / "adapters" / "daj-judge-v1" / "adapter_config.json").exists()
        assert all(r.label in ("correct", "wrong", "format_error") for g in second for r in g)
    finally:
        server.shutdown()
        server.server_close()


def test_params_errors_name_the_key():
    for train, field in (({"objective": "grpo", "grpo_group": 1}, "train.grpo_group"),
                         ({"steps": 5, "grad_accum": 2}, "train"),
                         ({"steps": 6, "grad_accum": 2, "grpo_mode": "sometimes"}, "train.grpo_mode")):
        with pytest.raises(DajError) as err:
            judge_params(train=train)
        assert err.value.field == field
    cfg = judge_params(train={"steps": 6, "grad_accum": 2, "grpo_mode": "offline"}).train
    assert (cfg.steps, cfg.optimizer_steps, cfg.grpo_mode) == (6, 3, "offline")

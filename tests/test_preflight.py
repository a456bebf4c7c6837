"""Fail fast offline: before any work, a stage that needs something outside the machine (the hub, vLLM,
a server behind base_url, a CUDA device) stops with one line naming the params key and what to do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daj.errors import DajError
from daj.params import load_config, with_overrides
from daj.paths import REPO
from daj.preflight import check_judge, check_policies, server_unreachable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(**overrides):
    return with_overrides(load_config(REPO / "params.yaml"), **overrides)


@pytest.mark.parametrize(("overrides", "field", "words"), [
    ({"judge.backend": "openai", "judge.base_url": "http://127.0.0.1:{port}/v1"}, "judge.base_url",
     "no OpenAI-compatible server answers"),
    ({"judge.backend": "vllm"}, "judge.backend", "needs vLLM"),
    ({"judge.engine_options": {"device": "cuda"}}, "judge.engine_options.device", "no CUDA device"),
    ({"judge.engine_options": {"batch_sise": 4}}, "judge.engine_options.batch_sise", "unknown option"),
    ({"judge.model": "Qwen/Qwen3-1.7B"}, "judge.model", "out of reach"),
    ({"judge.model": "models/missing"}, "judge.model", "no model checkpoint"),
])
def test_the_judge_stages_name_the_key(overrides, field, words):
    overrides = {k: v.format(port=_closed_port()) if isinstance(v, str) else v for k, v in overrides.items()}
    for stage in ("pairs", "train", "bon", "pairwise"):
        if stage == "train" and field != "judge.model" and overrides.get("judge.backend") != "openai":
            continue  # train loads judge.model itself; it asks the server only for online GRPO
        with pytest.raises(DajError, match=words) as err:
            cfg = config(**overrides, **({"train.objective": "grpo"} if stage == "train" else {}))
            check_judge(cfg, "params.yaml", stage) if stage != "train" else _train_check(cfg)
        assert err.value.field == field and err.value.path == "params.yaml"


def _train_check(cfg):
    from daj.models.loading import check_model_ref

    if cfg.judge.backend != "hf":
        check_judge(cfg, "params.yaml", "train")
    else:
        check_model_ref(cfg.judge.model, field="judge.model", path="params.yaml")


def test_policies_and_reward_models_are_checked_too():
    port = _closed_port()
    cfg = config(policies=[{"name": "mutants", "backend": "mutants", "n": 8},
                           {"name": "api", "backend": "openai", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1"}])
    with pytest.raises(DajError, match="no OpenAI-compatible server") as err:
        check_policies(cfg, "params.yaml")
    assert err.value.field == "policies[1].base_url"
    cfg = config(**{"bon.methods": ["random", "grm"], "bon.grm.backend": "vllm"})
    with pytest.raises(DajError, match="needs vLLM") as err:
        check_judge(cfg, "params.yaml", "bon")
    assert err.value.field == "bon.grm.backend"
    assert server_unreachable(f"http://127.0.0.1:{port}/v1") is not None


def test_a_stage_prints_one_line_with_the_line_number(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["judge"].update(backend="openai", base_url=f"http://127.0.0.1:{_closed_port()}/v1")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "stages.pairwise"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error in stage 'pairwise': params.yaml:") and "field 'judge.base_url'" in lines[0]
    assert not (Path(tmp_path) / "metrics").exists()  # nothing written

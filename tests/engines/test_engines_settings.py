"""The one sampling-settings mapping and its per-backend translations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from daj.engines.base import SamplingParams
from daj.engines.registry import engine_options
from daj.engines.settings import from_openai, to_hf, to_openai, to_vllm
from daj.engines.vllm_engine import vllm_model_args, vllm_sampling_kwargs
from daj.errors import DajError
from daj.hashing import prompt_seed
from daj.params import validate_params

PAPER = SamplingParams(n=4, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05,
                       max_new_tokens=8192, seed=3)
CHAT = [{"role": "user", "content": "hello"}]


def test_a_policy_overrides_the_sampling_defaults():
    config = validate_params({"sampling": {"n": 4, "temperature": 0.7, "max_new_tokens": 8192},
                              "policies": [{"name": "x", "backend": "hf", "model": "m", "n": 8, "top_k": None,
                                            "seed": 5}]})
    policy = config.policies[0]
    p = SamplingParams(**policy.sampling(config.sampling).model_dump(), seed=policy.seed)
    assert (p.n, p.temperature, p.max_new_tokens, p.seed, p.top_k) == (8, 0.7, 8192, 5, 20)


@pytest.mark.parametrize("bad", [{"n": 0}, {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -1},
                                 {"repetition_penalty": 0}, {"max_new_tokens": 0}, {"n": "four"},
                                 {"n": 2.5}, {"n": True}])
def test_bad_settings_name_the_field(bad):
    with pytest.raises(DajError) as e:
        validate_params({"sampling": bad}, "params.yaml")
    assert e.value.field == f"sampling.{next(iter(bad))}" and "params.yaml" in str(e.value)
    with pytest.raises(ValidationError):  # an engine call's settings are the same model
        SamplingParams(**bad)


def test_vllm_mapping():
    assert to_vllm(PAPER) == {"n": 4, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                              "repetition_penalty": 1.05, "max_tokens": 8192, "seed": 3}
    # top_k 0 (disabled) is -1 in vLLM; greedy neutralises top_p / top_k
    assert to_vllm(SamplingParams(top_k=0))["top_k"] == -1
    greedy = to_vllm(SamplingParams(temperature=0, top_p=0.5, top_k=5))
    assert (greedy["temperature"], greedy["top_p"], greedy["top_k"]) == (0, 1.0, -1)


def test_vllm_per_prompt_seeds_do_not_depend_on_the_batch():
    other = [{"role": "user", "content": "other"}]
    a = vllm_sampling_kwargs([CHAT, other], PAPER)
    b = vllm_sampling_kwargs([other, CHAT], PAPER)
    assert a[0] == b[1] and a[1] == b[0] and a[0]["seed"] != a[1]["seed"]
    assert a[0]["seed"] == prompt_seed(3, CHAT) and a[0]["max_tokens"] == 8192
    assert vllm_sampling_kwargs([CHAT], PAPER, ["<x>"])[0]["seed"] == prompt_seed(3, CHAT, "<x>")
    with pytest.raises(ValidationError):
        vllm_sampling_kwargs([CHAT], SamplingParams(n=0))


def test_vllm_model_args(tmp_path):
    args = vllm_model_args("Qwen/Qwen3-1.7B", adapter="models/judge", dtype="bf16", gpu_memory_utilization=0.8)
    assert args == {"model": "Qwen/Qwen3-1.7B", "dtype": "bfloat16", "enable_lora": True, "max_lora_rank": 64,
                    "gpu_memory_utilization": 0.8}
    (tmp_path / "m.gguf").write_bytes(b"")
    args = vllm_model_args(f"gguf:{tmp_path}:m.gguf")
    assert args["model"] == f"{tmp_path}/m.gguf" and args["tokenizer"] == str(tmp_path)
    assert args["enable_lora"] is False


def test_hf_mapping():
    kw = to_hf(PAPER)
    assert kw == {"max_new_tokens": 8192, "num_return_sequences": 4, "repetition_penalty": 1.05,
                  "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20}
    greedy = to_hf(SamplingParams(temperature=0, top_k=7))
    assert (greedy["do_sample"], greedy["top_k"], greedy["top_p"]) == (False, 0, 1.0)


def test_openai_round_trip():
    body = to_openai(PAPER, seed=11)
    assert body["max_tokens"] == 8192 and body["seed"] == 11 and body["top_k"] == 20
    back = from_openai(body)
    assert back == SamplingParams(n=4, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05,
                                  max_new_tokens=8192, seed=11)
    assert from_openai(to_openai(SamplingParams(top_k=0))).top_k == 0
    assert from_openai({"max_completion_tokens": 5}).max_new_tokens == 5
    defaults = from_openai({})
    assert (defaults.temperature, defaults.top_p, defaults.top_k, defaults.repetition_penalty) == (1.0, 1.0, 0, 1.0)


def test_registry_options():
    cls, kw = engine_options({"backend": "openai", "model": "m", "adapter": None, "base_url": "http://x/v1",
                              "n": 4, "temperature": 0.1, "name": "policy"})
    assert cls.__name__ == "OpenAIEngine" and kw == {"model": "m", "base_url": "http://x/v1"}
    with pytest.raises(DajError, match="unknown option"):
        engine_options({"backend": "hf", "model": "m", "nonsense": 1})
    with pytest.raises(DajError, match="unknown engine backend"):
        engine_options({"backend": "tgi", "model": "m"})
    with pytest.raises(DajError, match="needs a 'model'"):
        engine_options({"backend": "hf"})

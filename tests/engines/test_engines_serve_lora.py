"""The vLLM serving path, against our server: a base model plus LoRA adapters by name, over real HTTP.

`vllm serve BASE --enable-lora --lora-modules judge=models/judge` and runtime
POST /v1/load_lora_adapter cannot run here; daj.testing.openai_server implements the same routes and
naming, so the openai engine's side of that path (and the commands we document) is tested here.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest
import torch

from daj.engines.base import SamplingParams
from daj.engines.hf import HFEngine
from daj.engines.openai_engine import OpenAIEngine
from daj.engines.registry import make_engine
from daj.engines.vllm_engine import vllm_serve_plan
from daj.errors import DajError
from daj.hashing import prompt_seed
from daj.testing.openai_server import make_server, parse_lora_modules

CHATS = [[{"role": "user", "content": "def add(a, b):"}], [{"role": "user", "content": "Sort a list."}]]
SP = SamplingParams(n=2, max_new_tokens=6, seed=4)


@functools.lru_cache(maxsize=4)
def adapter_dir(tiny_model, seed: int) -> str:
    """A LoRA adapter on the tiny model whose B matrices are random (so it changes the outputs)."""
    from daj.models.loading import load_causal_lm
    from daj.train.lora import add_lora, save_adapter

    model, tok = load_causal_lm(tiny_model, device="cpu")
    lora = add_lora(model, r=4, alpha=8, targets=["q_proj", "v_proj"], seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    out = Path(tempfile.mkdtemp(prefix="daj-lora-")) / f"adapter{seed}"
    save_adapter(lora, tok, out)
    return str(out)


def texts(result) -> list[list[str]]:
    return [[c.text for c in cs] for cs in result]


def local(tiny_model, adapter: str | None, chats: list, sp: SamplingParams = SP) -> list[list[str]]:
    """What the server should answer: the openai engine sends each prompt's own seed (prompt_seed)."""
    eng = HFEngine(tiny_model, adapter=adapter, device="cpu", batch_size=1)
    return [texts(eng.generate([c], SamplingParams(**{**sp.to_dict(), "seed": prompt_seed(sp.seed, c)})))[0]
            for c in chats]


@pytest.fixture(scope="module")
def server(tiny_model):
    engine = HFEngine(tiny_model, device="cpu", batch_size=1)
    srv = make_server(engine, "tiny", port=0, lora_modules={"judge": adapter_dir(tiny_model, 1)}, enable_lora=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_base_and_lora_module_by_name_equal_local_engines(tiny_model, server):
    base_local, lora_local = local(tiny_model, None, CHATS), local(tiny_model, adapter_dir(tiny_model, 1), CHATS)
    assert base_local != lora_local  # the adapter matters
    base = OpenAIEngine("tiny", base_url=server.url, api_key_env=None)
    judge = make_engine({"backend": "openai", "model": "tiny", "adapter": adapter_dir(tiny_model, 1), "adapter_name": "judge",
                         "base_url": server.url, "api_key_env": None})
    assert judge.model == "judge"
    # alternate between them: switching adapters must not leak into the other name
    for _ in range(2):
        assert texts(judge.generate(CHATS, SP)) == lora_local
        assert texts(base.generate(CHATS, SP)) == base_local
    served = {m["id"]: m for m in json.loads(urllib.request.urlopen(server.url + "/models", timeout=30).read())["data"]}
    assert served["judge"]["parent"] == "tiny" and served["judge"]["root"] == adapter_dir(tiny_model, 1)
    assert served["tiny"]["parent"] is None


def test_runtime_load_and_unload(tiny_model, server):
    client = OpenAIEngine("tiny", base_url=server.url, api_key_env=None, max_retries=0,
                          adapter=adapter_dir(tiny_model, 2), adapter_name="fresh", load_adapter=True)
    assert texts(client.generate(CHATS[:1], SP)) == local(tiny_model, adapter_dir(tiny_model, 2), CHATS[:1])
    assert "fresh" in client.models()
    # loading again under the same name replaces it (the engine unloads a stale one first)
    client.load_lora("fresh", adapter_dir(tiny_model, 2))
    with pytest.raises(DajError, match="already served"):
        client.request("/load_lora_adapter", {"lora_name": "fresh", "lora_path": adapter_dir(tiny_model, 2)})
    with pytest.raises(DajError, match="not a PEFT adapter"):
        client.request("/load_lora_adapter", {"lora_name": "bad", "lora_path": tiny_model})
    assert client.request("/unload_lora_adapter", {"lora_name": "fresh"})["message"].startswith("Success")
    assert "fresh" not in client.models()
    with pytest.raises(DajError, match="404.*not served"):
        client.generate(CHATS[:1], SP)
    # the other adapter still answers as before
    judge = OpenAIEngine("judge", base_url=server.url, api_key_env=None)
    assert texts(judge.generate(CHATS[:1], SP)) == local(tiny_model, adapter_dir(tiny_model, 1), CHATS[:1])


def test_runtime_updates_need_enable_lora(tiny_model):
    srv = make_server(HFEngine(tiny_model, device="cpu", batch_size=1), "tiny", port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DajError, match="enable-lora"):
            OpenAIEngine("tiny", base_url=srv.url, api_key_env=None, max_retries=0, adapter=adapter_dir(tiny_model, 1),
                         load_adapter=True)
    finally:
        srv.shutdown()
        srv.server_close()
    with pytest.raises(DajError, match="load_adapter needs"):
        OpenAIEngine("tiny", load_adapter=True)


def test_parse_lora_modules_vllm_syntax():
    assert parse_lora_modules(["judge=models/judge", '{"name": "j2", "path": "/a/b"}']) == {
        "judge": "models/judge", "j2": "/a/b"}
    for bad in (["judge"], ["=x"], ['{"name": "x"}'], ["a=b", "a=c"]):
        with pytest.raises(DajError, match="lora-modules"):
            parse_lora_modules(bad)


def test_vllm_serve_plan(tiny_model, tmp_path):
    argv, env, spec = vllm_serve_plan("Qwen/Qwen3-1.7B", adapter=adapter_dir(tiny_model, 1), adapter_name="judge", port=8001,
                                      max_model_len=16384, enforce_eager=True, gpu_memory_utilization=None)
    assert argv[:3] == ["vllm", "serve", "Qwen/Qwen3-1.7B"]
    joined = " ".join(argv)
    assert f"--enable-lora --max-lora-rank 8 --lora-modules judge={adapter_dir(tiny_model, 1)}" in joined  # r=4 -> 8
    assert "--dtype bfloat16" in joined and "--max-model-len 16384" in joined and "--enforce-eager" in joined
    assert "gpu-memory" not in joined and env == {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    assert spec == {"backend": "openai", "model": "Qwen/Qwen3-1.7B", "base_url": "http://127.0.0.1:8001/v1",
                    "adapter": adapter_dir(tiny_model, 1), "adapter_name": "judge"}
    (tmp_path / "m.gguf").write_bytes(b"")
    plain, env, spec = vllm_serve_plan(f"gguf:{tmp_path}:m.gguf", dtype="fp32")
    assert plain[2] == f"{tmp_path}/m.gguf" and plain[plain.index("--tokenizer") + 1] == str(tmp_path)
    assert "--enable-lora" not in plain and env == {} and "adapter" not in spec
    big = tmp_path / "big"
    big.mkdir()
    (big / "adapter_config.json").write_text('{"r": 1024}')
    with pytest.raises(DajError, match="above vLLM"):
        vllm_serve_plan("m", adapter=str(big))


def test_vllm_backend_without_vllm_is_a_clear_error():
    try:
        import vllm  # noqa: F401
        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    with pytest.raises(DajError, match="needs vLLM") as err:
        make_engine({"backend": "vllm", "model": "Qwen/Qwen3-1.7B"})
    assert err.value.field == "backend"


@pytest.mark.slow
def test_vllm_serve_line_runs_our_server(tiny_model):
    """The `vllm serve` argv of vllm_serve_plan, run by our server, answers the openai spec it gives."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv, _, spec = vllm_serve_plan(tiny_model, adapter=adapter_dir(tiny_model, 1), adapter_name="judge", dtype="fp32",
                                    port=port, max_model_len=512)
    proc = subprocess.Popen([sys.executable, "-m", "daj.testing.openai_server", *argv[2:], "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}/v1" in line, line
        client = make_engine({**spec, "api_key_env": None})
        assert sorted(client.models()) == sorted(["judge", tiny_model])
        assert texts(client.generate(CHATS[:1], SP)) == local(tiny_model, adapter_dir(tiny_model, 1), CHATS[:1])
        base = make_engine({**spec, "adapter": None, "api_key_env": None})
        assert texts(base.generate(CHATS[:1], SP)) == local(tiny_model, None, CHATS[:1])
    finally:
        proc.kill()
        proc.wait(timeout=10)
    for bad in (["--lora-modules", "judge"], ["--max-lora-rank", "2", "--lora-modules", f"j={adapter_dir(tiny_model, 1)}"]):
        run = subprocess.run([sys.executable, "-m", "daj.testing.openai_server", tiny_model, "--port", "0", *bad],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode != 0 and ("--lora-modules" in run.stderr or "--max-lora-rank" in run.stderr), run.stderr

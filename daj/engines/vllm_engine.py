"""The `vllm` backend: vLLM's offline `LLM` on GPU (the [vllm] extra), LoRA adapters via LoRARequest.

Prompts without a prefix go through `LLM.chat` (vLLM applies the model's chat template); prompts with
a prefix are rendered with the same template by the tokenizer, the prefix appended, and passed to
`LLM.generate`. Each prompt gets its own vllm.SamplingParams with the prompt seed of
daj.engines.settings, so completions do not depend on the batch. This module cannot run on the CPU
machines of the project; the settings translation it uses (settings.to_vllm) is unit-tested.
It imports without vLLM; selecting the backend without vLLM is a DajError naming `backend`.

The served alternative (`vllm serve`, then the `openai` backend) needs no vLLM in this process:
`vllm_serve_plan(spec)` turns an engine spec into the `vllm serve` command line (with
`--enable-lora --lora-modules NAME=DIR` for an adapter) and the `openai` spec that talks to it.

    python -m daj.engines.vllm_engine --model Qwen/Qwen3-1.7B --adapter models/judge --port 8000
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from daj.engines.base import Chat, Completion, SamplingParams
from daj.engines.settings import to_vllm
from daj.errors import DajError
from daj.hashing import prompt_seed


def vllm_sampling_kwargs(prompts: list[Chat], params: SamplingParams,
                         prefixes: list[str] | None = None) -> list[dict]:
    """Per-prompt keyword arguments of vllm.SamplingParams (pure; unit-tested without vLLM)."""
    return [to_vllm(params, prompt_seed(params.seed, p, prefixes[i] if prefixes else None))
            for i, p in enumerate(prompts)]


def vllm_model_args(model: str, adapter: str | None = None, dtype: str = "bf16", **options) -> dict:
    """Keyword arguments of vllm.LLM for a model reference (gguf refs become the file path)."""
    from daj.models.loading import resolve_model_ref

    ref = resolve_model_ref(model)
    args = {"model": f"{ref.path}/{ref.gguf_file}" if ref.gguf_file else ref.path,
            "dtype": {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype),
            "enable_lora": adapter is not None}
    if ref.gguf_file:
        args["tokenizer"] = ref.path  # vLLM reads the tokenizer of a GGUF checkpoint from its folder
    if adapter is not None:
        args["max_lora_rank"] = options.pop("max_lora_rank", 64)
    args.update(options)  # gpu_memory_utilization, max_model_len, tensor_parallel_size, seed, ...
    return args


# vLLM accepts only these as --max-lora-rank
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(adapter: str) -> int | None:
    """The LoRA rank `r` in an adapter's adapter_config.json (None when the file is not there)."""
    path = Path(adapter) / "adapter_config.json"
    if not path.exists():
        return None
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["r"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise DajError("expected an integer 'r'", path=str(path), field="r") from None


def vllm_serve_plan(model: str, adapter: str | None = None, adapter_name: str | None = None, dtype: str = "bf16",
                    host: str = "127.0.0.1", port: int = 8000, served_model_name: str | None = None,
                    **options) -> tuple[list[str], dict, dict]:
    """(argv of `vllm serve`, environment it needs, `openai` engine spec for it) for a model and adapter.

    The base is served as `served_model_name` (default: the model reference); the adapter as
    `adapter_name` (default: the adapter path, so the spec's `adapter` and the served name agree),
    with --max-lora-rank the smallest vLLM value at or above the adapter's r. Other options
    (max_model_len=16384, gpu_memory_utilization=0.85, ...) become --max-model-len 16384, ... .
    Runtime loading (openai option load_adapter) needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True.
    """
    args = vllm_model_args(model, adapter, dtype)
    served = served_model_name or model
    argv = ["vllm", "serve", args["model"], "--served-model-name", served, "--dtype", args["dtype"],
            "--host", host, "--port", str(port)]
    if "tokenizer" in args:
        argv += ["--tokenizer", args["tokenizer"]]
    env: dict = {}
    spec: dict = {"backend": "openai", "model": served, "base_url": f"http://{host}:{port}/v1"}
    if adapter is not None:
        rank = adapter_rank(adapter) or options.pop("max_lora_rank", 64)
        options.pop("max_lora_rank", None)
        fit = next((r for r in LORA_RANKS if r >= rank), None)
        if fit is None:
            raise DajError(f"LoRA rank {rank} is above vLLM's largest ({LORA_RANKS[-1]})", field="adapter")
        name = adapter_name or adapter
        argv += ["--enable-lora", "--max-lora-rank", str(fit), "--lora-modules", f"{name}={adapter}"]
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        spec.update(adapter=adapter, adapter_name=name)
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (False, None):
            argv += [flag, str(value)]
    return argv, env, spec


class VLLMEngine:
    """Generation with vLLM's offline engine."""

    def __init__(self, model: str, adapter: str | None = None, dtype: str = "bf16", name: str | None = None,
                 **options):
        try:
            from vllm import LLM
        except ImportError:
            raise DajError("the vllm backend needs vLLM on a GPU machine: pip install 'daj[vllm]'",
                           field="backend") from None
        self.llm = LLM(**vllm_model_args(model, adapter, dtype, **options))
        self.lora = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, adapter)
        self.name = name or (f"{model}+{adapter}" if adapter else model)

    def generate(self, prompts: list[Chat], params: SamplingParams,
                 prefixes: list[str] | None = None) -> list[list[Completion]]:
        """`params.n` completions per prompt."""
        from vllm import SamplingParams as VSamplingParams

        if prefixes is not None and len(prefixes) != len(prompts):
            raise DajError(f"{len(prefixes)} prefixes for {len(prompts)} prompts", field="prefixes")
        sps = [VSamplingParams(**kw) for kw in vllm_sampling_kwargs(prompts, params, prefixes)]
        if prefixes is None:
            outputs = self.llm.chat(prompts, sampling_params=sps, lora_request=self.lora,
                                    add_generation_prompt=True, use_tqdm=False)
        else:
            tok = self.llm.get_tokenizer()
            texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) + prefixes[i]
                     for i, p in enumerate(prompts)]
            outputs = self.llm.generate(texts, sampling_params=sps, lora_request=self.lora, use_tqdm=False)
        results = []
        for out in outputs:
            n_prompt = len(out.prompt_token_ids or [])
            results.append([Completion(text=o.text, finish_reason="length" if o.finish_reason == "length" else "stop",
                                       prompt_tokens=n_prompt, completion_tokens=len(o.token_ids))
                            for o in out.outputs])
        return results

    def close(self) -> None:
        """Drop the engine (vLLM frees GPU memory when it is garbage-collected)."""
        self.llm = None


def main(argv: list[str] | None = None) -> None:
    """Print the `vllm serve` command and the matching openai engine spec (nothing is started)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--adapter-name", default=None)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-model-len", type=int, default=None)
    ap.add_argument("--gpu-memory-utilization", type=float, default=None)
    a = ap.parse_args(argv)
    try:
        cmd, env, spec = vllm_serve_plan(a.model, a.adapter, a.adapter_name, a.dtype, a.host, a.port,
                                         max_model_len=a.max_model_len,
                                         gpu_memory_utilization=a.gpu_memory_utilization)
    except DajError as e:
        raise SystemExit(f"error: {e}") from None
    print(" ".join([*(f"{k}={v}" for k, v in env.items()), shlex.join(cmd)]))
    print(json.dumps(spec))


if __name__ == "__main__":
    main()

"""The `vllm` backend: vLLM's offline `LLM` on GPU (the [vllm] extra), LoRA adapters via LoRARequest.

Prompts without a prefix go through `LLM.chat` (vLLM applies the model's chat template); prompts with
a prefix are rendered with the same template by the tokenizer, the prefix appended, and passed to
`LLM.generate`. Each prompt gets its own vllm.SamplingParams with the prompt seed of
daj.engines.settings, so completions do not depend on the batch. This module cannot run on the CPU
machines of the project; the settings translation it uses (settings.to_vllm) is unit-tested.
"""

from __future__ import annotations

from daj.engines.base import Chat, Completion, SamplingParams
from daj.engines.settings import prompt_seed, to_vllm, validate
from daj.errors import DajError


def vllm_sampling_kwargs(prompts: list[Chat], params: SamplingParams,
                         prefixes: list[str] | None = None) -> list[dict]:
    """Per-prompt keyword arguments of vllm.SamplingParams (pure; unit-tested without vLLM)."""
    validate(params)
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

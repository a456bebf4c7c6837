"""Engines over the judge being trained: online GRPO draws its rollouts from the CURRENT adapter.

`LiveEngine` wraps an in-memory (PEFT) model and its tokenizer, with the `hf` backend's generation and
continuation scoring (daj.engines.hf.HFEngine's public methods, unchanged), so every call sees the
weights as they are now; nothing is loaded from disk. Generation runs in eval mode under no_grad and
leaves the model's training mode and the global torch RNG as they were.

A prompt may be a chat (rendered with the tokenizer's chat template) or an already rendered text,
wrapped by `rendered(text)`: training data carries the rendered prompt that the trainer scores, so
sampling from exactly that text keeps the sampled tokens and the scored tokens the same.

At paper scale the rollouts come from an OpenAI-compatible server instead (`vllm serve
--enable-lora`, with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True): `push_adapter` saves the current
adapter where the server can read it and registers it through `/v1/load_lora_adapter` under a new
name per version; requests then name that adapter as their `model` (daj.engines.openai_engine).
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path

from daj.engines.base import Chat
from daj.engines.hf import HFEngine
from daj.errors import DajError

RENDERED_ROLE = "daj.rendered"


def rendered(text: str) -> Chat:
    """A prompt that is already rendered text (LiveEngine uses it verbatim, no chat template)."""
    return [{"role": RENDERED_ROLE, "content": text}]


class LiveEngine(HFEngine):
    """The hf engine over a model object that keeps training (no copy, no reload)."""

    def __init__(self, model, tokenizer, name: str = "live", batch_size: int = 16):
        self._setup(model, tokenizer, str(next(model.parameters()).device), batch_size, name, penalty="fast")

    def render(self, prompt: Chat, prefix: str | None = None) -> str:
        if len(prompt) == 1 and prompt[0].get("role") == RENDERED_ROLE:
            return prompt[0]["content"] + (prefix or "")
        return super().render(prompt, prefix)

    @contextlib.contextmanager
    def _inference(self):
        import torch

        was_training = self.model.training
        use_cache = getattr(self.model.config, "use_cache", None)
        self.model.eval()
        self.model.config.use_cache = True
        try:
            with torch.no_grad():
                yield
        finally:
            self.model.config.use_cache = use_cache
            if was_training:
                self.model.train()

    def generate(self, prompts, params, prefixes=None, continuations=None):
        with self._inference():
            return super().generate(prompts, params, prefixes, continuations)

    def score_continuations_batch(self, requests, batch_size=None):
        with self._inference():
            return super().score_continuations_batch(requests, batch_size)

    def close(self) -> None:
        """The model belongs to the trainer: nothing to release."""


def push_adapter(model, out_dir: str | Path, base_url: str, name: str, previous: str | None = None,
                 api_key: str = "", timeout_s: float = 300.0) -> str:
    """Save the current adapter to `out_dir/name` and register it on a `vllm serve --enable-lora`
    server (POST /v1/load_lora_adapter {lora_name, lora_path}); unload `previous` first when given.
    The server must see `out_dir` at the same path (shared disk). Returns `name`."""
    path = Path(out_dir) / name
    model.save_pretrained(str(path))
    if previous:
        with contextlib.suppress(DajError):  # already gone is fine
            _post(base_url, "/unload_lora_adapter", {"lora_name": previous}, api_key, timeout_s)
    _post(base_url, "/load_lora_adapter", {"lora_name": name, "lora_path": str(path.resolve())}, api_key, timeout_s)
    return name


def _post(base_url: str, route: str, body: dict, api_key: str, timeout_s: float) -> str:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    req = urllib.request.Request(base_url.rstrip("/") + route, data=json.dumps(body).encode("utf-8"),
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - user-configured URL
            return resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        raise DajError(f"{base_url}{route} answered HTTP {e.code}: {e.read().decode('utf-8', 'replace')[:300]} "
                       "(start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)",
                       field="train.rollout_server") from None
    except (urllib.error.URLError, OSError) as e:
        raise DajError(f"cannot reach {base_url}{route}: {e}", field="train.rollout_server") from None

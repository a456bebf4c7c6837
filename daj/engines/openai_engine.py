"""The `openai` backend: any OpenAI-compatible chat-completions server (`vllm serve`, daj.testing.openai_server).

Plain HTTP with urllib (no extra dependency). One request per prompt asks for all `n` completions;
`concurrency` requests run at once in threads. Connection failures, timeouts, 429 and 5xx answers
are retried with exponential backoff; when the server stays unreachable a DajError says so.
Prefixes are sent the vLLM way: a final assistant message holding the prefix, with
`continue_final_message: true` and `add_generation_prompt: false`.

LoRA adapters are addressed the vLLM way, by their served name: `adapter` (the adapter directory)
is requested as model `adapter_name` (default: `adapter` itself, i.e. `vllm serve ... --enable-lora
--lora-modules models/judge=models/judge`). With `load_adapter: true` the engine first asks the
server to load it (POST /v1/load_lora_adapter with the directory's absolute path, after unloading a
stale adapter of that name), so a freshly trained adapter needs no server restart.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from daj.engines.base import Chat, Completion, SamplingParams
from daj.engines.settings import to_openai
from daj.errors import DajError
from daj.hashing import prompt_seed

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class ServerError(Exception):
    """An HTTP answer that is not a success (status and body kept for the message)."""

    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


# vllm: an OpenAI-compatible server that reads vLLM's sampling fields (vllm serve, daj.testing.openai_server);
# openai-reasoning: OpenAI's own API for o-series models (no sampling settings, max_completion_tokens)
API_STYLES = ("vllm", "openai-reasoning")
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"   # a `vllm serve` on this host
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"


class OpenAIEngine:
    """Chat completions over HTTP."""

    def __init__(self, model: str, base_url: str = DEFAULT_BASE_URL, api_key_env: str = DEFAULT_API_KEY_ENV,
                 concurrency: int = 4, max_retries: int = 4, backoff_s: float = 1.0, timeout_s: float = 600.0,
                 adapter: str | None = None, name: str | None = None, extra_body: dict | None = None,
                 adapter_name: str | None = None, load_adapter: bool = False, api: str = "vllm"):
        if api not in API_STYLES:
            raise DajError(f"api must be one of {', '.join(API_STYLES)}, got {api!r}", field="api")
        if concurrency < 1:
            raise DajError(f"concurrency must be >= 1, got {concurrency}", field="concurrency")
        if max_retries < 0:
            raise DajError(f"max_retries must be >= 0, got {max_retries}", field="max_retries")
        if load_adapter and not adapter:
            raise DajError("load_adapter needs 'adapter' (the adapter directory)", field="load_adapter")
        # With `vllm serve --lora-modules name=path`, the adapter is addressed by its served name.
        self.model = (adapter_name or adapter) if adapter else model
        self.base_url = base_url.rstrip("/")
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.concurrency, self.max_retries = concurrency, max_retries
        self.backoff_s, self.timeout_s = backoff_s, timeout_s
        self.extra_body = dict(extra_body or {})
        self.api = api
        self.name = name or self.model
        if load_adapter:
            self.load_lora(self.model, adapter)

    def load_lora(self, lora_name: str, lora_path: str) -> None:
        """Have the server serve `lora_path` as `lora_name` (replacing an adapter of that name)."""
        from pathlib import Path

        try:  # vLLM refuses to load a name twice: drop a stale one first (absent is fine)
            self._post("/unload_lora_adapter", {"lora_name": lora_name})
        except (ServerError, urllib.error.URLError, OSError, json.JSONDecodeError):
            pass
        body = {"lora_name": lora_name, "lora_path": str(Path(lora_path).resolve())}
        self.request("/load_lora_adapter", body)
    def _post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - user-configured URL
                text = resp.read().decode("utf-8")
                # vLLM's adapter routes answer plain text ("Success: ...")
                return {"message": text} if path.endswith("_lora_adapter") else json.loads(text)
        except urllib.error.HTTPError as e:
            raise ServerError(e.code, e.read().decode("utf-8", "replace")) from None

    def request(self, path: str, body: dict) -> dict:
        """POST with retries: connection errors, timeouts, 429 and 5xx back off and try again."""
        delay = self.backoff_s
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(path, body)
            except ServerError as e:
                if e.status not in RETRY_STATUS:
                    raise DajError(f"server {self.base_url} refused the request: {e}", field="base_url") from None
                last = str(e)
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            if attempt < self.max_retries:
                log.warning("request to %s failed (%s); retry %d/%d in %.1f s", self.base_url, last,
                            attempt + 1, self.max_retries, delay)
                time.sleep(delay)
                delay *= 2
        raise DajError(f"OpenAI-compatible server at {self.base_url} is not answering after "
                       f"{self.max_retries + 1} tries ({last}); is it running?", field="base_url")

    def _one(self, prompt: Chat, prefix: str | None, params: SamplingParams) -> list[Completion]:
        messages = list(prompt)
        sampling = to_openai(params, prompt_seed(params.seed, prompt, prefix))
        if self.api == "openai-reasoning":
            # OpenAI's reasoning models (o-series) refuse sampling settings: they decode with their own
            # fixed ones, and the budget is named max_completion_tokens
            sampling = {"n": sampling["n"], "seed": sampling.get("seed"),
                        "max_completion_tokens": sampling["max_tokens"]}
        body = {"model": self.model, **sampling, **self.extra_body}
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
            body.update(continue_final_message=True, add_generation_prompt=False)
        body["messages"] = messages
        data = self.request("/chat/completions", body)
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            usage = data.get("usage") or {}
            n_prompt = int(usage.get("prompt_tokens", 0))
            n_total = int(usage.get("completion_tokens", 0))
            out = []
            for c in choices:
                text = c["message"]["content"] or ""
                if prefix and text.startswith(prefix):  # some servers echo the continued message
                    text = text[len(prefix):]
                out.append(Completion(text=text, finish_reason="length" if c.get("finish_reason") == "length"
                                      else "stop", prompt_tokens=n_prompt,
                                      # per-choice counts where the server gives them (ours does)
                                      completion_tokens=int(c.get("completion_tokens",
                                                                  n_total // max(len(choices), 1)))))
        except (KeyError, TypeError, ValueError) as e:
            raise DajError(f"unexpected answer from {self.base_url}: {type(e).__name__}: {e}",
                           field="base_url") from None
        if len(out) != params.n:
            raise DajError(f"server {self.base_url} returned {len(out)} choices, asked for {params.n}",
                           field="base_url")
        return out

    def generate(self, prompts: list[Chat], params: SamplingParams,
                 prefixes: list[str] | None = None) -> list[list[Completion]]:
        """`params.n` completions per prompt, `concurrency` requests at a time."""
        if prefixes is not None and len(prefixes) != len(prompts):
            raise DajError(f"{len(prefixes)} prefixes for {len(prompts)} prompts", field="prefixes")
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            futures = [pool.submit(self._one, p, prefixes[i] if prefixes else None, params)
                       for i, p in enumerate(prompts)]
            return [f.result() for f in futures]

    def models(self) -> list[str]:
        """Model ids the server lists (GET /models)."""
        req = urllib.request.Request(self.base_url + "/models",
                                     headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                return [m["id"] for m in json.loads(resp.read().decode("utf-8"))["data"]]
        except (urllib.error.URLError, OSError) as e:
            raise DajError(f"cannot list models at {self.base_url}: {e}", field="base_url") from None

    def close(self) -> None:
        """Nothing to release (connections are per request)."""

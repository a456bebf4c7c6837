"""Value-head reward models (Skywork-o1-Open-PRM layout): one scalar per input token.

Checkpoint layout (Skywork/Skywork-o1-Open-PRM-Qwen-2.5-7B and -1.5B): a causal LM's base weights
(`model.*`) and a value head `v_head.summary.weight` [1, hidden] / `v_head.summary.bias` [1] in its
safetensors files (the names Skywork's vLLM plugin, `Qwen2ForPrmModel`, loads). The value at a
token is `v_head(hidden state)`; a PRM step reward is its sigmoid at the step's last token
(daj.eval.reward_models).

Backends (`make_value_model`):
- `hf`: loaded here (a GPU in bf16 when there is one, else the CPU in fp32): transformers' AutoModel for the base (trust_remote_code off: the base is a plain
  Qwen2/Qwen3 model), the head read from the safetensors files;
- `openai`: an OpenAI-compatible server's POST /v1/embeddings with token ids as input, one embedding per
  input whose entries are the per-token values (vLLM serving the checkpoint with Skywork's plugin, as
  in Skywork's own client); the engine is daj's openai engine, its retries included.

Stand-ins: `random_head_seed` puts a seeded random head (torch's default Linear initialisation) on any
causal-LM checkpoint, such as the tiny model; a real PRM leaves it null and must ship its head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from daj.errors import DajError

HEAD_WEIGHT, HEAD_BIAS = "v_head.summary.weight", "v_head.summary.bias"


class ValueModel(Protocol):
    """Per-token values of token-id sequences; `name` identifies model and head for caches."""

    name: str
    tokenizer: object

    def values(self, batch: list[list[int]]) -> list[list[float]]: ...

    def close(self) -> None: ...


def _checkpoint_dir(model: str) -> Path:
    """The local directory of a checkpoint: the path itself, or the hub snapshot of an id."""
    from daj.models.loading import looks_local

    if looks_local(model):
        return Path(model)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, allow_patterns=["*.safetensors", "*.json"]))


def read_head(model: str):
    """(weight [1, hidden], bias [1]) of the value head in a checkpoint's safetensors files."""
    from safetensors import safe_open

    for path in sorted(_checkpoint_dir(model).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            keys = set(fh.keys())
            if HEAD_WEIGHT in keys:
                bias = fh.get_tensor(HEAD_BIAS) if HEAD_BIAS in keys else None
                return fh.get_tensor(HEAD_WEIGHT), bias
    raise DajError(f"no value head ({HEAD_WEIGHT}) in the safetensors files of {model!r}; a stand-in "
                   "without one needs random_head_seed", field="model")


class HFValueModel:
    """A value-head model run with transformers (right-padded batches of `batch_size`)."""

    def __init__(self, model: str, random_head_seed: int | None = None, batch_size: int = 4,
                 device: str | None = None, dtype: str | None = None):
        import torch
        from transformers import AutoModel

        from daj.judge.runner import judge_name
        from daj.models.loading import check_model_ref, load_tokenizer

        mref = check_model_ref(model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")  # bf16 on a GPU, fp32 on CPU
        dtype = dtype or ("bf16" if device.startswith("cuda") else "fp32")
        torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        try:
            self.model = AutoModel.from_pretrained(mref.path, dtype=torch_dtype, trust_remote_code=False,
                                                   **mref.kwargs()).to(device).eval()
        except OSError as e:
            raise DajError(f"cannot load model {model!r}: {e}", field="model") from None
        self.tokenizer = load_tokenizer(model)
        hidden = self.model.config.hidden_size
        self.head = torch.nn.Linear(hidden, 1, dtype=torch.float32)
        if random_head_seed is None:
            weight, bias = read_head(model)
            if tuple(weight.shape) != (1, hidden):
                raise DajError(f"value head of {model!r} has shape {tuple(weight.shape)}, expected (1, {hidden})",
                               field="model")
            with torch.no_grad():
                self.head.weight.copy_(weight.float())
                self.head.bias.copy_(bias.float() if bias is not None else torch.zeros(1))
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(random_head_seed)
                self.head.reset_parameters()
        self.head = self.head.to(device).eval()
        self.device, self.batch_size = device, batch_size
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.name = judge_name(model, None) + (f"#value-head-seed{random_head_seed}" if random_head_seed is not None
                                               else "")

    def values(self, batch: list[list[int]]) -> list[list[float]]:
        """The value at every token of each sequence (causal attention: right padding changes nothing)."""
        import torch

        out: list[list[float]] = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start:start + self.batch_size]
            width = max(len(ids) for ids in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, row in enumerate(chunk):
                ids[r, :len(row)] = torch.tensor(row, dtype=torch.long)
                mask[r, :len(row)] = 1
            with torch.no_grad():
                hidden = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
                vals = self.head(hidden.float()).squeeze(-1).cpu()
            out += [vals[r, :len(row)].tolist() for r, row in enumerate(chunk)]
        return out

    def close(self) -> None:
        self.model = None


class ServedValueModel:
    """A value-head model behind an OpenAI-compatible /v1/embeddings route (vLLM + Skywork's plugin)."""

    def __init__(self, model: str, tokenizer: str | None = None, **engine_options):
        from daj.engines.registry import make_engine
        from daj.models.loading import load_tokenizer

        self.engine = make_engine({"backend": "openai", "model": model, **engine_options})
        ref = tokenizer or model
        try:
            self.tokenizer = load_tokenizer(ref)
        except (OSError, ValueError) as e:
            raise DajError(f"cannot load the tokenizer {ref!r} that makes the reward model's token ids: {e}",
                           field="tokenizer") from None
        from daj.judge.runner import engine_cache_name

        self.name = engine_cache_name({"backend": "openai", "model": model, **engine_options})

    def values(self, batch: list[list[int]]) -> list[list[float]]:
        if not batch:
            return []
        data = self.engine.request("/embeddings", {"model": self.engine.model, "input": batch})
        try:
            rows = [d["embedding"] for d in sorted(data["data"], key=lambda d: d.get("index", 0))]
        except (KeyError, TypeError) as e:
            raise DajError(f"unexpected /embeddings answer from {self.engine.base_url}: {e}", field="base_url") from None
        for ids, row in zip(batch, rows, strict=False):
            if len(row) != len(ids):
                raise DajError(f"/embeddings at {self.engine.base_url} returned {len(row)} values for {len(ids)} "
                               "tokens; serve the PRM with per-token (ALL) pooling", field="base_url")
        if len(rows) != len(batch):
            raise DajError(f"/embeddings returned {len(rows)} rows for {len(batch)} inputs", field="base_url")
        return [[float(v) for v in row] for row in rows]

    def close(self) -> None:
        self.engine.close()


def make_value_model(backend: str, model: str, random_head_seed: int | None = None, batch_size: int = 4,
                     tokenizer: str | None = None, base_url: str | None = None,
                     api_key_env: str | None = None) -> ValueModel:
    """The value model of a PRM spec (see the module docstring)."""
    if backend == "hf":
        return HFValueModel(model, random_head_seed=random_head_seed, batch_size=batch_size)
    if backend == "openai":
        options = {k: v for k, v in (("base_url", base_url), ("api_key_env", api_key_env)) if v is not None}
        return ServedValueModel(model, tokenizer=tokenizer, **options)
    raise DajError(f"a value-head reward model runs on backend hf or openai, not {backend!r}", field="backend")

"""The `hf` backend: transformers `generate` on CPU or GPU, batched with left padding.

Prompts are rendered with the tokenizer's chat template (generation prompt added) plus the optional
prefix. Prompts are processed in chunks of `batch_size`; each chunk's random stream is seeded from
the base seed and the chunk's prompts (with batch_size 1, a prompt's completions depend only on the
seed and the prompt). The global torch RNG is left untouched.

The repetition penalty runs as daj.engines.penalty.FastRepetitionPenalty (`penalty: fast`, the
default): the same processed scores as transformers' RepetitionPenaltyLogitsProcessor, bit for bit,
so the same tokens for the same seed, at a cost that does not grow with the vocabulary.
`penalty: hf` keeps transformers' own processor (the old path, for benchmarks).
"""

from __future__ import annotations

import contextlib
import inspect
import logging

from daj.engines.base import Chat, Completion, SamplingParams
from daj.engines.penalty import FastRepetitionPenalty, hf_ignores_left_padding
from daj.engines.settings import prompt_seed, to_hf
from daj.errors import DajError

log = logging.getLogger(__name__)
PENALTY_IMPLS = ("fast", "hf")
CACHE_IMPLS = ("dynamic", "static")  # transformers' cache_implementation during generate
# torch.compile of the forward during generate: auto = transformers' choice (it compiles with a static
# cache on GPU, mode reduce-overhead), off = never, else a torch.compile mode
COMPILE_MODES = ("auto", "off", "default", "reduce-overhead", "max-autotune-no-cudagraphs")
# GenerationConfig fields whose processors transformers would place around its repetition penalty:
# with any of them set the fast penalty (which runs after them) could change the order, so `hf` is used
_ORDERED_FIELDS = {"guidance_scale": (None, 1, 1.0), "sequence_bias": (None,), "encoder_repetition_penalty": (None, 1.0),
                   "no_repeat_ngram_size": (None, 0), "encoder_no_repeat_ngram_size": (None, 0),
                   "bad_words_ids": (None,), "min_length": (None, 0), "min_new_tokens": (None, 0),
                   "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
                   "remove_invalid_values": (None, False), "exponential_decay_length_penalty": (None,),
                   "suppress_tokens": (None,), "begin_suppress_tokens": (None,)}


class HFEngine:
    """Generation (and continuation scoring) with a transformers causal LM."""

    def __init__(self, model: str, adapter: str | None = None, dtype: str = "fp32", device: str | None = None,
                 batch_size: int = 8, name: str | None = None, penalty: str = "fast", cache: str = "dynamic",
                 compile: str = "auto"):  # noqa: A002 - the option's name in params
        import torch

        from daj.models.loading import load_causal_lm

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._check_options(batch_size, penalty, cache, compile)
        loaded, tokenizer = load_causal_lm(model, adapter=adapter, dtype=dtype, device=device)
        self._setup(loaded, tokenizer, device, batch_size, name or (f"{model}+{adapter}" if adapter else model),
                    penalty, cache, compile)

    @classmethod
    def from_model(cls, model, tokenizer=None, name: str = "in-memory", device: str = "cpu", batch_size: int = 8,
                   penalty: str = "fast", cache: str = "dynamic", compile: str = "auto",  # noqa: A002
                   eos_ids: list[int] | None = None, pad_token_id: int | None = None) -> HFEngine:
        """An engine around a model already in memory (benchmarks, live training). Without a tokenizer
        only `generate_ids` works; `eos_ids` / `pad_token_id` then replace the tokenizer's."""
        cls._check_options(batch_size, penalty, cache, compile)
        engine = cls.__new__(cls)
        engine._setup(model, tokenizer, device, batch_size, name, penalty, cache, compile, eos_ids, pad_token_id)
        return engine

    @staticmethod
    def _check_options(batch_size: int, penalty: str, cache: str, compile: str) -> None:  # noqa: A002
        if batch_size < 1:
            raise DajError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
        if penalty not in PENALTY_IMPLS:
            raise DajError(f"penalty must be one of {', '.join(PENALTY_IMPLS)}, got {penalty!r}", field="penalty")
        if cache not in CACHE_IMPLS:
            raise DajError(f"cache must be one of {', '.join(CACHE_IMPLS)}, got {cache!r}", field="cache")
        if compile not in COMPILE_MODES:
            raise DajError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {compile!r}", field="compile")

    def _setup(self, model, tokenizer, device: str, batch_size: int, name: str, penalty: str, cache: str,
               compile: str, eos_ids: list[int] | None = None, pad_token_id: int | None = None) -> None:  # noqa: A002
        self.model, self.tokenizer = model, tokenizer
        if tokenizer is not None:
            self.tokenizer.padding_side = "left"
        self.device, self.batch_size, self.name, self.penalty, self.cache = device, batch_size, name, penalty, cache
        self.compile = compile
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer is not None and tokenizer.eos_token_id is not None:
            eos.append(tokenizer.eos_token_id)
        self.eos_ids = sorted(set(eos_ids if eos_ids is not None else eos))
        self.pad_token_id = tokenizer.pad_token_id if tokenizer is not None else pad_token_id
        # transformers 5.2x renamed `past_key_values` to `cache` (the old name warns, then goes away)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        self._cache_kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        if not self.eos_ids:
            raise DajError(f"model {name!r} defines no end-of-sequence token", field="model")

    def render(self, prompt: Chat, prefix: str | None = None) -> str:
        """The prompt text the model sees: chat template with generation prompt, then the prefix."""
        text = self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return text + (prefix or "")

    def _encode(self, texts: list[str]):
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def _completion(self, row, prompt_tokens: int) -> Completion:
        ids = row.tolist()
        stop = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        kept = ids if stop is None else ids[:stop]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text=text, finish_reason="length" if stop is None else "stop",
                          prompt_tokens=prompt_tokens, completion_tokens=len(ids) if stop is None else stop + 1)

    def generate(self, prompts: list[Chat], params: SamplingParams,
                 prefixes: list[str] | None = None) -> list[list[Completion]]:
        """`params.n` completions per prompt (see the module docstring for seeding)."""
        if prefixes is not None and len(prefixes) != len(prompts):
            raise DajError(f"{len(prefixes)} prefixes for {len(prompts)} prompts", field="prefixes")
        greedy = params.temperature == 0
        results: list[list[Completion]] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(range(start, min(start + self.batch_size, len(prompts))))
            texts = [self.render(prompts[i], prefixes[i] if prefixes else None) for i in chunk]
            seeds = [prompt_seed(params.seed, prompts[i], prefixes[i] if prefixes else None) for i in chunk]
            seed = seeds[0] if len(seeds) == 1 else prompt_seed(params.seed, [{"seeds": str(seeds)}])
            enc = self._encode(texts)
            gen = self.generate_ids(enc["input_ids"], enc["attention_mask"], params, seed)
            per = gen.shape[0] // len(chunk)
            for k in range(len(chunk)):
                prompt_tokens = int(enc["attention_mask"][k].sum())
                comps = [self._completion(gen[k * per + j], prompt_tokens) for j in range(per)]
                results.append(comps * params.n if greedy else comps)
        return results

    def generate_ids(self, input_ids, attention_mask, params: SamplingParams, seed: int):
        """The new token ids for one left-padded batch, `n` rows per prompt (1 under greedy decoding),
        with the torch RNG seeded by `seed` (the global RNG is left untouched)."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList
        from transformers.generation.configuration_utils import CompileConfig

        kw = to_hf(params)
        if not kw["do_sample"]:  # transformers refuses several return sequences without sampling; they are equal
            kw["num_return_sequences"] = 1
        config = GenerationConfig(**{**self.model.generation_config.to_dict(), **kw})
        config.pad_token_id = self.pad_token_id
        config.eos_token_id = self.eos_ids
        if self.cache != "dynamic":
            config.cache_implementation = self.cache
        if self.compile == "off":
            config.disable_compile = True
        elif self.compile != "auto":
            config.compile_config = CompileConfig(mode=self.compile)
        fast = self._fast_penalty(config)
        if fast:
            config.repetition_penalty = 1.0  # ours replaces transformers' processor at the same place
        devices = [torch.device(self.device)] if str(self.device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            extra = {"logits_processor": LogitsProcessorList([self._penalty_processor(
                params, attention_mask, kw["num_return_sequences"])])} if fast else {}
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                                      **extra)
        return out[:, input_ids.shape[1]:]

    def _fast_penalty(self, config) -> bool:
        """Whether this call's repetition penalty runs as FastRepetitionPenalty (see _ORDERED_FIELDS)."""
        if self.penalty != "fast" or config.repetition_penalty in (None, 1.0):
            return False
        clash = [f for f, neutral in _ORDERED_FIELDS.items() if getattr(config, f, None) not in neutral]
        if clash:
            log.debug("generation config sets %s: transformers' repetition penalty is used", ", ".join(clash))
        return not clash

    @staticmethod
    def _penalty_processor(params: SamplingParams, attention_mask, per: int) -> FastRepetitionPenalty:
        """The fast penalty for one chunk: left padding left out where transformers leaves it out."""
        lengths = None
        if hf_ignores_left_padding() and not bool((attention_mask == 1).all()):
            lengths = (attention_mask != 0).int().argmax(dim=1).repeat_interleave(per)
        return FastRepetitionPenalty(params.repetition_penalty, lengths)

    def prompt_tokens(self, prompt: Chat, prefix: str | None = None) -> int:
        """Number of tokens of the rendered prompt plus `prefix`."""
        return len(self.tokenizer(self.render(prompt, prefix), add_special_tokens=False)["input_ids"])

    def score_continuations(self, prompt: Chat, prefix: str, options: list[str]) -> list[float]:
        """Total log-probability of each option's tokens after the rendered prompt plus `prefix`.

        Context and option are tokenised separately and concatenated, so every option is scored
        from the same context tokens. The context is run once (only its last position's logits are
        kept); the options' remaining tokens then run as one right-padded batch on its key/value
        cache (causal attention: padding after a token cannot change that token's logits).
        """
        if not options:
            return []
        ctx = self.tokenizer(self.render(prompt, prefix), add_special_tokens=False)["input_ids"]
        return self.score_ids(ctx, [self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options])

    def score_ids(self, ctx: list[int], opts: list[list[int]]) -> list[float]:
        """score_continuations on token ids: the log-probability of each option's ids after `ctx`."""
        import torch

        if any(not o for o in opts):
            raise DajError("an option to score is empty", field="options")
        if not opts:
            return []
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([ctx], device=self.device), use_cache=True, logits_to_keep=1)
            scores = [float(v) for v in torch.log_softmax(out.logits[0, -1].float(), dim=-1)[[o[0] for o in opts]]]
            width = max(len(o) for o in opts) - 1
            if width == 0:
                return scores
            cache = getattr(out, self._cache_kw)
            cache.batch_repeat_interleave(len(opts))
            pad = self.pad_token_id if self.pad_token_id is not None else self.eos_ids[0]
            ids = torch.full((len(opts), width), pad, dtype=torch.long)
            for i, o in enumerate(opts):
                ids[i, :len(o) - 1] = torch.tensor(o[:-1])
            logits = self.model(input_ids=ids.to(self.device), use_cache=True, **{self._cache_kw: cache}).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
        for i, o in enumerate(opts):
            scores[i] += float(logp[i, torch.arange(len(o) - 1), torch.tensor(o[1:], dtype=torch.long)].sum())
        return scores

    def score_continuations_batch(self, requests: list[tuple[Chat, str, list[str]]],
                                  batch_size: int | None = None) -> list[list[float]]:
        """`score_continuations` for many (prompt, prefix, options) requests, `batch_size` prompts per forward.

        The contexts of a chunk run as one left-padded batch (attention mask and position ids set, so
        every row sees what it would see alone); the options of all its prompts then run as one
        right-padded batch on the context cache, each row on its own prompt's cache row. Equal to the
        one-prompt path up to float rounding (a chunk of one prompt takes that path).
        """
        size = batch_size or self.batch_size
        if size < 1:
            raise DajError(f"batch_size must be >= 1, got {size}", field="batch_size")
        out: list[list[float]] = []
        for start in range(0, len(requests), size):
            chunk = requests[start:start + size]
            ctxs = [self.tokenizer(self.render(prompt, prefix), add_special_tokens=False)["input_ids"]
                    for prompt, prefix, _ in chunk]
            opts = [[self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
                    for _, _, options in chunk]
            out.extend(self.score_ids_batch(ctxs, opts))
        return out

    def score_ids_batch(self, ctxs: list[list[int]], opts: list[list[list[int]]]) -> list[list[float]]:
        """score_ids for several contexts in one padded forward (see score_continuations_batch)."""
        import torch

        if len(ctxs) == 1:
            return [self.score_ids(ctxs[0], opts[0])]
        if any(not o for row in opts for o in row):
            raise DajError("an option to score is empty", field="options")
        pad = self.pad_token_id if self.pad_token_id is not None else self.eos_ids[0]
        length = max(len(c) for c in ctxs)
        ids = torch.full((len(ctxs), length), pad, dtype=torch.long)
        mask = torch.zeros((len(ctxs), length), dtype=torch.long)
        for r, c in enumerate(ctxs):
            ids[r, length - len(c):] = torch.tensor(c)
            mask[r, length - len(c):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        dev = self.device
        with torch.no_grad():
            out = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                             use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            scores = [[float(first[r, o[0]]) for o in row] for r, row in enumerate(opts)]
            flat = [(r, o) for r, row in enumerate(opts) for o in row]
            width = max((len(o) for _, o in flat), default=1) - 1
            if width == 0:
                return scores
            rows = torch.tensor([r for r, _ in flat], dtype=torch.long)
            cache = getattr(out, self._cache_kw)
            cache.reorder_cache(rows.to(dev))  # one cache row per option, copied from its prompt's row
            opt_ids = torch.full((len(flat), width), pad, dtype=torch.long)
            for i, (_, o) in enumerate(flat):
                opt_ids[i, :len(o) - 1] = torch.tensor(o[:-1])
            opt_mask = torch.cat([mask[rows], torch.ones((len(flat), width), dtype=torch.long)], dim=1)
            opt_pos = mask.sum(-1)[rows][:, None] + torch.arange(width)[None, :]
            logits = self.model(input_ids=opt_ids.to(dev), attention_mask=opt_mask.to(dev),
                                position_ids=opt_pos.to(dev), use_cache=True, **{self._cache_kw: cache}).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
        k = 0
        for r, row in enumerate(opts):
            for i, o in enumerate(row):
                scores[r][i] += float(logp[k, torch.arange(len(o) - 1), torch.tensor(o[1:], dtype=torch.long)].sum())
                k += 1
        return scores

    def load_adapter(self, name: str, path: str) -> None:
        """Add a LoRA adapter under `name` next to the loaded ones (for serving several on one base)."""
        from pathlib import Path

        from peft import PeftModel

        if not (Path(path) / "adapter_config.json").exists():
            raise DajError(f"{path!r} is not a PEFT adapter directory (no adapter_config.json)", field="lora_path")
        if isinstance(self.model, PeftModel):
            if name in self.model.peft_config:
                raise DajError(f"an adapter named {name!r} is already loaded", field="lora_name")
            self.model.load_adapter(path, adapter_name=name)
        else:
            self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
        self.model.eval()

    def unload_adapter(self, name: str) -> None:
        """Remove an adapter added by load_adapter."""
        peft_config = getattr(self.model, "peft_config", {})
        if name not in peft_config:
            raise DajError(f"no adapter named {name!r} is loaded", field="lora_name")
        if len(peft_config) == 1:  # PEFT cannot delete its last adapter: drop the wrapper instead
            self.model = self.model.unload()
        else:
            if self.model.active_adapter == name:
                self.model.set_adapter(next(n for n in peft_config if n != name))
            self.model.delete_adapter(name)

    @contextlib.contextmanager
    def using_adapter(self, name: str | None):
        """Run the block with only adapter `name` active, or with no adapter (the base) when None."""
        peft_config = getattr(self.model, "peft_config", None)
        if name is None:
            if peft_config is None:
                yield
            else:
                with self.model.disable_adapter():
                    yield
            return
        if not peft_config or name not in peft_config:
            raise DajError(f"no adapter named {name!r} is loaded", field="model")
        self.model.set_adapter(name)
        yield

    def close(self) -> None:
        """Drop the model (frees GPU memory when it is the last reference)."""
        self.model = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

"""The `hf` backend: a transformers causal LM on CPU or GPU, decoded by our own loop.

Generation (`generate`):

- Every prompt is rendered with the tokenizer's chat template (generation prompt added) plus the
  optional prefix and tokenised once (memoised).
- Every distinct prompt is prefilled alone, without padding, so its key/value cache and its first
  logits depend on its own tokens only. The caches of a chunk (`batch_size` prompts, `n` rows each)
  are then stacked with left padding and decoded together (attention mask and position ids set, so
  every row sees what it would see alone).
- Settings are applied in the order of transformers' `generate`: repetition penalty
  (daj.engines.penalty.FastRepetitionPenalty, bit-identical to transformers' processor; left
  padding never penalised), temperature, top-k, top-p (transformers' own warpers); temperature 0
  is greedy (argmax). The model's generation_config is not consulted beyond its end-of-sequence
  ids: the SamplingParams are the whole meaning.
- Row j of a prompt draws its tokens from its own random stream, seeded by (prompt seed, j), where
  the prompt seed is daj.engines.settings.prompt_seed(base seed, prompt, prefix): an inverse-CDF draw
  of one uniform per step (float64 cumulative probabilities). So a prompt's completions depend on
  the prompt, the settings and the seed, not on `batch_size` or on the other prompts of its chunk.
  The one residue is float rounding: a batched decoding step computes a row's logits with other
  matrix shapes than a lone row (differences of about 1e-7 here), which changes a draw only when its
  uniform falls within that distance of a boundary of the cumulative distribution.

Continuation scoring (`score_continuations`, `score_continuations_batch`, and `continuations` after
`generate`): the log-probability of each option's tokens after the rendered prompt plus a prefix.
Context and option are tokenised separately and concatenated. A context is prefilled alone; after
`generate`, the rows' caches are reused for the longest prefix their tokens share with the context
(the prompt and usually most of the completion), so only the remaining context tokens run again.
The options' remaining tokens then run as one right-padded batch on those caches. Log-probabilities
come from TRL's `selective_log_softmax` (the numeric of the training losses).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from daj.engines.base import Chat, Completion, SamplingParams
from daj.engines.penalty import FastRepetitionPenalty
from daj.engines.settings import prompt_seed
from daj.errors import DajError
from daj.hashing import stable_seed

PENALTY_IMPLS = ("fast", "hf")
MEMO_SIZE = 4096  # rendered-and-tokenised prompts kept per engine

# after `generate`: (prompt index, completion text) -> (the assistant text to score after, in place of the
# completion, e.g. the completion plus an opening tag; options to score there), or None for no scoring
Continuations = Callable[[int, str], "tuple[str, list[str]] | None"]


@functools.cache
def selective_log_softmax():
    """TRL's log_softmax -> gather (trl.trainer.utils.selective_log_softmax), imported on first use."""
    from trl.trainer.utils import selective_log_softmax as fn

    return fn


def row_seed(seed: int, row: int) -> int:
    """The seed of row `row` of a prompt whose seed is `seed`."""
    return stable_seed("row", seed, row)


@dataclass
class _Rows:
    """A decoded (or prefilled) batch: its cache and, per row, what the cache holds."""

    cache: object              # transformers DynamicCache, (rows, heads, columns, dim) per layer
    mask: object               # (rows, columns) long: 1 where a row holds a real token
    start: list[int]           # row -> first column of its tokens (left padding before it)
    tokens: list[list[int]]    # row -> the token ids its cache holds, in order


class HFEngine:
    """Generation and continuation scoring with a transformers causal LM."""

    def __init__(self, model: str, adapter: str | None = None, dtype: str = "fp32", device: str | None = None,
                 batch_size: int = 8, name: str | None = None, penalty: str = "fast"):
        import torch

        from daj.models.loading import load_causal_lm

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._check_options(batch_size, penalty)
        loaded, tokenizer = load_causal_lm(model, adapter=adapter, dtype=dtype, device=device)
        self._setup(loaded, tokenizer, device, batch_size, name or (f"{model}+{adapter}" if adapter else model),
                    penalty)

    @classmethod
    def from_model(cls, model, tokenizer=None, name: str = "in-memory", device: str = "cpu", batch_size: int = 8,
                   penalty: str = "fast", eos_ids: list[int] | None = None,
                   pad_token_id: int | None = None) -> HFEngine:
        """An engine around a model already in memory (benchmarks, live training). Without a tokenizer
        only the token-id methods work (`generate_ids`, `score_ids`); `eos_ids` / `pad_token_id` then
        replace the tokenizer's."""
        cls._check_options(batch_size, penalty)
        engine = cls.__new__(cls)
        engine._setup(model, tokenizer, device, batch_size, name, penalty, eos_ids, pad_token_id)
        return engine

    @staticmethod
    def _check_options(batch_size: int, penalty: str) -> None:
        if batch_size < 1:
            raise DajError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
        if penalty not in PENALTY_IMPLS:
            raise DajError(f"penalty must be one of {', '.join(PENALTY_IMPLS)}, got {penalty!r}", field="penalty")

    def _setup(self, model, tokenizer, device: str, batch_size: int, name: str, penalty: str,
               eos_ids: list[int] | None = None, pad_token_id: int | None = None) -> None:
        import inspect

        self.model, self.tokenizer = model, tokenizer
        self.device, self.batch_size, self.name, self.penalty = device, batch_size, name, penalty
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer is not None and tokenizer.eos_token_id is not None:
            eos.append(tokenizer.eos_token_id)
        self.eos_ids = sorted(set(eos_ids if eos_ids is not None else eos))
        pad = tokenizer.pad_token_id if tokenizer is not None else pad_token_id
        if not self.eos_ids:
            raise DajError(f"model {name!r} defines no end-of-sequence token", field="model")
        self.pad_token_id = pad if pad is not None else self.eos_ids[0]
        # transformers 5.2x renamed `past_key_values` to `cache` (the old name warns, then goes away)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        self._cache_kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self._memo: OrderedDict[str, list[int]] = OrderedDict()
        self._options: dict[str, list[int]] = {}

    # ---- text <-> ids -------------------------------------------------------------------------------

    def render(self, prompt: Chat, prefix: str | None = None) -> str:
        """The prompt text the model sees: chat template with generation prompt, then the prefix."""
        text = self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return text + (prefix or "")

    def encode(self, prompt: Chat, prefix: str | None = None) -> list[int]:
        """The token ids of render(prompt, prefix) (memoised)."""
        key = json.dumps([prompt, prefix or ""], ensure_ascii=False)
        ids = self._memo.get(key)
        if ids is None:
            ids = self._tokenize(self.render(prompt, prefix))
            self._memo[key] = ids
            if len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return ids

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_tokens(self, prompt: Chat, prefix: str | None = None) -> int:
        """Number of tokens of the rendered prompt plus `prefix`."""
        return len(self.encode(prompt, prefix))

    def _completion(self, ids: list[int], prompt_tokens: int) -> Completion:
        stop = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        kept = ids if stop is None else ids[:stop]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text=text, finish_reason="length" if stop is None else "stop",
                          prompt_tokens=prompt_tokens, completion_tokens=len(ids) if stop is None else stop + 1)

    # ---- generation ---------------------------------------------------------------------------------

    def generate(self, prompts: list[Chat], params: SamplingParams, prefixes: list[str] | None = None,
                 continuations: Continuations | None = None) -> list[list[Completion]]:
        """`params.n` completions per prompt (see the module docstring for seeding).

        `continuations`, when given, is asked about every completion; for an answer (prefix, options) the
        options are scored after the prompt plus that prefix (`score_continuations`), reusing the
        completion's decoding cache, and the scores land in the completion's `extra["option_scores"]`,
        the prefix in `extra["scored_prefix"]`.
        """
        if prefixes is not None and len(prefixes) != len(prompts):
            raise DajError(f"{len(prefixes)} prefixes for {len(prompts)} prompts", field="prefixes")
        results: list[list[Completion]] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(prompts)))
            lead = [prefixes[i] if prefixes else "" for i in chunk]
            ids = [self.encode(prompts[i], lead[k]) for k, i in enumerate(chunk)]
            seeds = [prompt_seed(params.seed, prompts[i], prefixes[i] if prefixes else None) for i in chunk]
            rows, generated = self._decode(ids, seeds, params)
            per = len(generated) // len(chunk)
            comps = [[self._completion(generated[k * per + j], len(ids[k])) for j in range(per)]
                     for k in range(len(chunk))]
            if continuations is not None:
                self._score_completions(rows, comps, per, lambda k, text, at=chunk: continuations(at[k], text),
                                        lambda k, prefix, at=chunk, lead=lead: self.encode(prompts[at[k]],
                                                                                           lead[k] + prefix))
            results += [c * params.n if per == 1 and params.n > 1 else c for c in comps]
        return results

    def generate_ids(self, prompts: list[list[int]], params: SamplingParams,
                     seeds: list[int]) -> list[list[int]]:
        """The new token ids of each row (n rows per prompt; 1 under greedy decoding) for prompts given as
        token ids, prompt k's rows seeded by seeds[k] (the global torch RNG is left untouched)."""
        return self._decode(prompts, seeds, params)[1]

    def _decode(self, ids: list[list[int]], seeds: list[int], params: SamplingParams) -> tuple[_Rows, list[list[int]]]:
        """Prefill every prompt alone, decode all rows together; (rows, new token ids per row)."""
        import torch

        greedy = params.temperature == 0
        per = 1 if greedy else params.n
        owner = [k for k in range(len(ids)) for _ in range(per)]
        with torch.no_grad():
            caches, first = self._prefill(ids)
            rows = self._stack(caches, ids, owner)
            logits = first[owner]
            dev, width = self.device, rows.mask.shape[1]
            seq = torch.full((len(owner), width), self.pad_token_id, dtype=torch.long)
            for r, k in enumerate(owner):
                seq[r, rows.start[r]:] = torch.tensor(ids[k])
            seq = seq.to(dev)
            penalty = self._penalty(params, rows.start)
            warpers = [] if greedy else self._warpers(params)
            streams = None if greedy else [torch.Generator().manual_seed(row_seed(seeds[k], j))
                                           for k in range(len(ids)) for j in range(per)]
            eos = torch.tensor(self.eos_ids, device=dev)
            unfinished = torch.ones(len(owner), dtype=torch.bool, device=dev)
            valid = torch.tensor([len(ids[k]) for k in owner], device=dev)
            mask, steps = rows.mask, []
            for step in range(params.max_new_tokens):
                scores = logits.to(torch.float32, copy=True)
                if penalty is not None:
                    scores = penalty(seq, scores)
                if greedy:
                    token = scores.argmax(dim=-1)
                else:
                    for warp in warpers:
                        scores = warp(seq, scores)
                    token = self._draw(scores, streams)
                token = torch.where(unfinished, token, self.pad_token_id)
                steps.append(token)
                seq = torch.cat([seq, token[:, None]], dim=1)
                unfinished &= ~torch.isin(token, eos)
                if step + 1 == params.max_new_tokens or not bool(unfinished.any()):
                    break
                mask = torch.cat([mask, torch.ones((len(owner), 1), dtype=mask.dtype, device=dev)], dim=1)
                out = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=valid[:, None],
                                 use_cache=True, **{self._cache_kw: rows.cache})
                valid = valid + 1
                logits = out.logits[:, -1]
        generated = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in owner]
        fed = max(len(steps) - 1, 0)  # the last token of every row was never fed to the model
        rows.mask = mask
        rows.tokens = [ids[k] + generated[r][:fed] for r, k in enumerate(owner)]
        return rows, generated

    def _prefill(self, ids: list[list[int]]):
        """Each prompt alone: (its cache, the logits after its last token stacked per prompt)."""
        import torch

        caches, last = [], []
        for x in ids:
            if not x:
                raise DajError("a prompt to decode or score is empty", field="prompt")
            out = self.model(input_ids=torch.tensor([x], device=self.device), use_cache=True, logits_to_keep=1)
            caches.append(getattr(out, self._cache_kw))
            last.append(out.logits[0, -1])
        return caches, torch.stack(last)

    def _stack(self, caches: list, ids: list[list[int]], owner: list[int]) -> _Rows:
        """One left-padded cache with row r = prompt owner[r]'s cache."""
        import torch
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        width = max(len(ids[k]) for k in owner)
        layers = []
        for index in range(len(caches[0].layers)):
            keys, values = [], []
            for k in owner:
                layer = caches[k].layers[index]
                if type(layer) is not DynamicLayer:
                    raise DajError(f"the hf engine decodes models with full-attention caches only; this model's "
                                   f"layer {index} uses {type(layer).__name__}", field="model")
                pad = width - layer.keys.shape[-2]
                keys.append(torch.nn.functional.pad(layer.keys, (0, 0, pad, 0)))
                values.append(torch.nn.functional.pad(layer.values, (0, 0, pad, 0)))
            layers.append((torch.cat(keys), torch.cat(values)))
        start = [width - len(ids[k]) for k in owner]
        mask = torch.zeros((len(owner), width), dtype=torch.long)
        for r, s in enumerate(start):
            mask[r, s:] = 1
        return _Rows(DynamicCache(ddp_cache_data=layers), mask.to(self.device), start, [ids[k] for k in owner])

    def _penalty(self, params: SamplingParams, start: list[int]):
        """The repetition penalty of one batch (None when off); left padding is never penalised."""
        import torch

        if params.repetition_penalty == 1.0:
            return None
        lengths = torch.tensor(start, device=self.device)
        if self.penalty == "fast":
            return FastRepetitionPenalty(params.repetition_penalty, lengths)
        from transformers import RepetitionPenaltyLogitsProcessor

        try:
            return RepetitionPenaltyLogitsProcessor(params.repetition_penalty, prompt_ignore_length=lengths)
        except (TypeError, ValueError):  # an older transformers: no per-row lengths (pads are penalised)
            return RepetitionPenaltyLogitsProcessor(params.repetition_penalty)

    @staticmethod
    def _warpers(params: SamplingParams) -> list:
        """transformers' temperature, top-k and top-p warpers, as `generate` builds them."""
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        out = []
        if params.temperature != 1.0:
            out.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k != 0:
            out.append(TopKLogitsWarper(top_k=params.top_k, min_tokens_to_keep=1))
        if params.top_p < 1.0:
            out.append(TopPLogitsWarper(top_p=params.top_p, min_tokens_to_keep=1))
        return out

    @staticmethod
    def _draw(scores, streams):
        """One token per row: the inverse CDF of the row's probabilities at one uniform from its stream."""
        import torch

        cdf = torch.softmax(scores.double(), dim=-1).cumsum(dim=-1)
        u = torch.tensor([float(torch.rand((), generator=g, dtype=torch.float64)) for g in streams],
                         dtype=torch.float64, device=scores.device)
        token = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]
        return token.clamp_(max=scores.shape[-1] - 1)

    # ---- continuation scoring -------------------------------------------------------------------------

    def _score_completions(self, rows: _Rows, comps: list[list[Completion]], per: int, ask, context) -> None:
        """Score the options `ask` wants after each completion, reusing its decoding cache row; equal
        (prompt, text) pairs are scored once."""
        wanted: dict[tuple[int, str], list] = {}
        asked: list[tuple[Completion, tuple[int, str]]] = []
        for k, row_comps in enumerate(comps):
            for j, comp in enumerate(row_comps):
                spec = ask(k, comp.text)
                if spec is None:
                    continue
                prefix, options = spec
                key = (k, prefix)
                if key not in wanted:
                    wanted[key] = [k * per + j, context(k, key[1]), [self._option_ids(o) for o in options]]
                asked.append((comp, key))
        if not wanted:
            return
        results = dict(zip(wanted, self._score_on_rows(rows, list(wanted.values())), strict=True))
        for comp, key in asked:
            comp.extra["scored_prefix"] = key[1]
            comp.extra["option_scores"] = results[key]

    def _option_ids(self, option: str) -> list[int]:
        ids = self._options.get(option)
        if ids is None:
            ids = self._options[option] = self._tokenize(option)
        return ids

    def _score_on_rows(self, rows: _Rows, requests: list) -> list[list[float]]:
        """requests: [row, context ids, options ids]; each reuses its row's cached prefix of the context."""
        import torch
        from transformers import DynamicCache

        reuse = []
        for r, ctx, opts in requests:
            if any(not o for o in opts):
                raise DajError("an option to score is empty", field="options")
            held = rows.tokens[r]
            n = 0
            limit = min(len(held), len(ctx) - 1)
            while n < limit and held[n] == ctx[n]:
                n += 1
            reuse.append(n)
        width = max(reuse)
        layers = []
        for layer in rows.cache.layers:
            keys, values = [], []
            for (r, _, _), n in zip(requests, reuse, strict=True):
                s = rows.start[r]
                keys.append(torch.nn.functional.pad(layer.keys[r:r + 1, :, s:s + n], (0, 0, width - n, 0)))
                values.append(torch.nn.functional.pad(layer.values[r:r + 1, :, s:s + n], (0, 0, width - n, 0)))
            layers.append((torch.cat(keys), torch.cat(values)))
        cache = DynamicCache(ddp_cache_data=layers)
        tails = [ctx[n:] for (_, ctx, _), n in zip(requests, reuse, strict=True)]
        span = max(len(t) for t in tails)
        ids = torch.full((len(requests), span), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(requests), width + span), dtype=torch.long)
        pos = torch.zeros((len(requests), span), dtype=torch.long)
        for q, (tail, n) in enumerate(zip(tails, reuse, strict=True)):
            ids[q, span - len(tail):] = torch.tensor(tail)
            mask[q, width - n:width] = 1
            mask[q, width + span - len(tail):] = 1
            pos[q, span - len(tail):] = torch.arange(n, n + len(tail))
        dev = self.device
        with torch.no_grad():
            out = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                             use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        lengths = [len(ctx) for _, ctx, _ in requests]
        return self._score_options(cache, mask.to(dev), lengths, out.logits[:, -1], [o for _, _, o in requests])

    def _score_options(self, cache, mask, lengths: list[int], first, opts: list[list[list[int]]]) -> list[list[float]]:
        """Option log-probabilities: the first token from `first` (the logits after each context), the
        rest as one right-padded batch on `cache` (row q: context q, `lengths[q]` real tokens)."""
        import torch

        dev = self.device
        logp = selective_log_softmax()
        scores = []
        for q, row in enumerate(opts):
            index = torch.tensor([[o[0] for o in row]], dtype=torch.long, device=dev)
            scores.append([float(v) for v in logp(first[q:q + 1].float(), index)[0]] if row else [])
        flat = [(q, o) for q, row in enumerate(opts) for o in row]
        width = max((len(o) for _, o in flat), default=1) - 1
        if width == 0:
            return scores
        rows = torch.tensor([q for q, _ in flat], dtype=torch.long, device=dev)
        cache.reorder_cache(rows)  # one cache row per option, copied from its context's row
        ids = torch.full((len(flat), width), self.pad_token_id, dtype=torch.long)
        targets = torch.zeros((len(flat), width), dtype=torch.long)
        for i, (_, o) in enumerate(flat):
            ids[i, :len(o) - 1] = torch.tensor(o[:-1])
            targets[i, :len(o) - 1] = torch.tensor(o[1:])
        opt_mask = torch.cat([mask[rows], torch.ones((len(flat), width), dtype=mask.dtype, device=dev)], dim=1)
        opt_pos = torch.tensor([lengths[q] for q, _ in flat], device=dev)[:, None] + torch.arange(width, device=dev)
        with torch.no_grad():
            logits = self.model(input_ids=ids.to(dev), attention_mask=opt_mask, position_ids=opt_pos,
                                use_cache=True, **{self._cache_kw: cache}).logits
            picked = logp(logits.float(), targets.to(dev))
        k = 0
        for q, row in enumerate(opts):
            for i, o in enumerate(row):
                scores[q][i] += float(picked[k, :len(o) - 1].sum())
                k += 1
        return scores

    def score_continuations(self, prompt: Chat, prefix: str, options: list[str]) -> list[float]:
        """Total log-probability of each option's tokens after the rendered prompt plus `prefix`
        (see the module docstring)."""
        return self.score_continuations_batch([(prompt, prefix, options)])[0]

    def score_continuations_batch(self, requests: list[tuple[Chat, str, list[str]]],
                                  batch_size: int | None = None) -> list[list[float]]:
        """`score_continuations` for many (prompt, prefix, options) requests: every context prefilled
        alone, the options of `batch_size` contexts in one batch."""
        return self.score_ids_batch([self.encode(prompt, prefix) for prompt, prefix, _ in requests],
                                    [[self._option_ids(o) for o in options] for _, _, options in requests],
                                    batch_size)

    def score_ids(self, ctx: list[int], opts: list[list[int]]) -> list[float]:
        """score_continuations on token ids: the log-probability of each option's ids after `ctx`."""
        return self.score_ids_batch([ctx], [opts])[0]

    def score_ids_batch(self, ctxs: list[list[int]], opts: list[list[list[int]]],
                        batch_size: int | None = None) -> list[list[float]]:
        """score_ids for several contexts (each prefilled alone; options batched per `batch_size` contexts)."""
        import torch

        size = batch_size or self.batch_size
        if size < 1:
            raise DajError(f"batch_size must be >= 1, got {size}", field="batch_size")
        if any(not o for row in opts for o in row):
            raise DajError("an option to score is empty", field="options")
        out: list[list[float]] = []
        for start in range(0, len(ctxs), size):
            chunk, chunk_opts = ctxs[start:start + size], opts[start:start + size]
            if not any(chunk_opts):
                out += [[] for _ in chunk]
                continue
            with torch.no_grad():
                caches, first = self._prefill(chunk)
                rows = self._stack(caches, chunk, list(range(len(chunk))))
                out += self._score_options(rows.cache, rows.mask, [len(c) for c in chunk], first, chunk_opts)
        return out

    # ---- adapters -------------------------------------------------------------------------------------

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

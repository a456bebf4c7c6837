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
  the prompt seed is daj.hashing.prompt_seed(base seed, prompt, prefix): an inverse-CDF draw
  of one uniform per step (float64 cumulative probabilities). So a prompt's completions depend on
  the prompt, the settings and the seed, not on `batch_size` or on the other prompts of its chunk.
  The one residue is float rounding: a batched decoding step computes a row's logits with other
  matrix shapes than a lone row (differences of about 1e-7 here), which changes a draw only when its
  uniform falls within that distance of a boundary of the cumulative distribution.

Continuation scoring (`score_continuations`, `score_continuations_batch`, and `continuations` after
`generate`): the log-probability of each option's tokens after the rendered prompt plus a prefix.
Context and option are tokenised separately and concatenated. A context is prefilled alone (but for
its last token); after `generate`, a row's decoding cache is reused for the longest prefix its tokens
share with the context (the prompt and usually most of the completion; the rest of the row is masked
out). The context's remaining tokens and every option then run in one forward under a tree attention
mask (each option sees the context and its own earlier tokens only). Log-probabilities come from
TRL's `selective_log_softmax` (the numeric of the training losses).
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
from daj.errors import DajError
from daj.hashing import prompt_seed, row_seed

PENALTY_IMPLS = ("fast", "hf")
MEMO_SIZE = 4096  # rendered-and-tokenised prompts kept per engine
ROOM = 64  # columns a copied cache keeps free for what comes next (a context's tail, the options)

# after `generate`: (prompt index, completion text) -> (the assistant text to score after, in place of the
# completion, e.g. the completion plus an opening tag; options to score there), or None for no scoring
Continuations = Callable[[int, str], "tuple[str, list[str]] | None"]


@functools.cache
def selective_log_softmax():
    """TRL's log_softmax -> gather (trl.trainer.utils.selective_log_softmax), imported on first use."""
    from trl.trainer.utils import selective_log_softmax as fn

    return fn


@functools.cache
def _room_layer_class():
    """A transformers DynamicLayer over buffers with room to grow: `update` writes the new keys and values
    in place (the stock layer concatenates, copying the whole cache at every decoding step)."""
    import torch
    from transformers.cache_utils import DynamicLayer

    class RoomLayer(DynamicLayer):
        def __init__(self, keys, values, length: int):
            super().__init__()
            self.device, self.is_initialized = keys.device, True
            self._use(keys, values, length)

        def _use(self, keys, values, length: int) -> None:
            self._keys, self._values, self.length = keys, values, length
            self.keys, self.values = keys[:, :, :length], values[:, :, :length]

        def _copy(self, keys, values, room: int) -> None:
            n = keys.shape[-2]
            k = keys.new_empty((*keys.shape[:2], n + room, keys.shape[-1]))
            v = values.new_empty((*values.shape[:2], n + room, values.shape[-1]))
            k[:, :, :n], v[:, :, :n] = keys, values
            self._use(k, v, n)

        def update(self, key_states, value_states, *args, **kwargs):
            n = key_states.shape[-2]
            if self.length + n > self._keys.shape[-2]:
                self._copy(self.keys, self.values, self.length + 2 * n)
            self._keys[:, :, self.length:self.length + n] = key_states
            self._values[:, :, self.length:self.length + n] = value_states
            self._use(self._keys, self._values, self.length + n)
            return self.keys, self.values

        def reorder_cache(self, beam_idx) -> None:
            index = beam_idx.to(self.keys.device)
            self._copy(self.keys.index_select(0, index), self.values.index_select(0, index), ROOM)

        def batch_select_indices(self, indices) -> None:
            self.reorder_cache(torch.as_tensor(indices, device=self.keys.device))

        def batch_repeat_interleave(self, repeats: int) -> None:
            self._copy(self.keys.repeat_interleave(repeats, dim=0), self.values.repeat_interleave(repeats, dim=0),
                       ROOM)

        def crop(self, tokens_to_remove: int) -> None:
            raise NotImplementedError("not used by the hf engine")

    return RoomLayer


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
                 batch_size: int = 16, name: str | None = None, penalty: str = "fast", merge_adapter: bool = True):
        """`merge_adapter`: add the LoRA adapter's weights to the base weights once (PEFT's separate adapter
        calls cost about a quarter of every forward of the tiny judge); false keeps PEFT's layers, which
        switching adapters needs (the test server)."""
        import torch

        from daj.models.loading import load_causal_lm

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._check_options(batch_size, penalty)
        loaded, tokenizer = load_causal_lm(model, adapter=adapter, dtype=dtype, device=device)
        if adapter and merge_adapter:
            loaded = loaded.merge_and_unload()
        self._setup(loaded, tokenizer, device, batch_size, name or (f"{model}+{adapter}" if adapter else model),
                    penalty)

    @classmethod
    def from_model(cls, model, tokenizer=None, name: str = "in-memory", device: str = "cpu", batch_size: int = 16,
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
        self._memo: OrderedDict[str, tuple[str, list[int]]] = OrderedDict()
        self._options: dict[str, list[int]] = {}
        self._added: tuple[str, ...] | None = None

    # ---- text <-> ids -------------------------------------------------------------------------------

    def render(self, prompt: Chat, prefix: str | None = None) -> str:
        """The prompt text the model sees: chat template with generation prompt, then the prefix."""
        text = self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return text + (prefix or "")

    def encode(self, prompt: Chat, prefix: str | None = None) -> list[int]:
        """The token ids of render(prompt, prefix) (memoised)."""
        return self._rendered(prompt, prefix)[1]

    def _rendered(self, prompt: Chat, prefix: str | None = None) -> tuple[str, list[int]]:
        key = json.dumps([prompt, prefix or ""], ensure_ascii=False)
        hit = self._memo.get(key)
        if hit is None:
            text = self.render(prompt, prefix)
            hit = self._memo[key] = (text, self._tokenize(text))
            if len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return hit

    def encode_extended(self, prompt: Chat, prefix: str | None, extra: str) -> list[int]:
        """encode(prompt, prefix + extra), tokenising only what follows the rendered prompt's last added
        token (the tokenizer splits its input at added tokens before anything else, so the ids before it
        cannot change); checked on the prompt itself, else the whole text is tokenised."""
        text, ids = self._rendered(prompt, prefix)
        cut = max((text.rfind(t) + len(t) for t in self._added_tokens() if t in text), default=-1)
        if cut > 0:
            tail = self._tokenize(text[cut:]) if cut < len(text) else []
            if ids[len(ids) - len(tail):] == tail:
                return ids[:len(ids) - len(tail)] + self._tokenize(text[cut:] + extra)
        return self._tokenize(text + extra)

    def _added_tokens(self) -> tuple[str, ...]:
        """The tokenizer's added tokens that match exactly their text (no stripping around them)."""
        if self._added is None:
            decoder = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
            self._added = tuple(t.content for t in decoder.values() if not (t.lstrip or t.rstrip or t.single_word))
        return self._added

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
        lead = [prefixes[i] if prefixes else "" for i in range(len(prompts))]
        ids = [self.encode(p, lead[i]) for i, p in enumerate(prompts)]
        # chunks of prompts of similar lengths (little padding to decode over): answers do not depend on
        # the chunk, so the order is free
        order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
        results: list[list[Completion]] = [[] for _ in prompts]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            seeds = [prompt_seed(params.seed, prompts[i], prefixes[i] if prefixes else None) for i in chunk]
            rows, generated = self._decode([ids[i] for i in chunk], seeds, params)
            per = len(generated) // len(chunk)
            comps = [[self._completion(generated[k * per + j], len(ids[i])) for j in range(per)]
                     for k, i in enumerate(chunk)]
            if continuations is not None:
                self._score_completions(rows, comps, per, lambda k, text, at=chunk: continuations(at[k], text),
                                        lambda k, prefix, at=chunk: self.encode_extended(
                                            prompts[at[k]], lead[at[k]], prefix))
            for i, c in zip(chunk, comps, strict=True):
                results[i] = c * params.n if per == 1 and params.n > 1 else c
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
            rows = self._stack(caches, ids, owner, room=params.max_new_tokens + ROOM)
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
            mask = torch.ones((len(owner), width + params.max_new_tokens), dtype=rows.mask.dtype, device=dev)
            mask[:, :width] = rows.mask
            columns, steps = width, []
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
                columns += 1
                out = self.model(input_ids=token[:, None], attention_mask=mask[:, :columns],
                                 position_ids=valid[:, None], use_cache=True, **{self._cache_kw: rows.cache})
                valid = valid + 1
                logits = out.logits[:, -1]
        generated = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in owner]
        fed = max(len(steps) - 1, 0)  # the last token of every row was never fed to the model
        rows.mask = mask[:, :columns]
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

    def _stack(self, caches: list, ids: list[list[int]], owner: list[int], room: int = ROOM) -> _Rows:
        """One left-padded cache with row r = prompt owner[r]'s cache, with room for `room` more columns
        (left padding holds zeros: masked, but finite)."""
        import torch
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        width = max(len(ids[k]) for k in owner)
        start = [width - len(ids[k]) for k in owner]
        layers = []
        for index in range(len(caches[0].layers)):
            first = caches[owner[0]].layers[index]
            buffers = []
            for part in ("keys", "values"):
                ref = getattr(first, part)
                buf = ref.new_empty((len(owner), ref.shape[1], width + room, ref.shape[-1]))
                buf[:, :, :width].zero_()
                buffers.append(buf)
            for r, k in enumerate(owner):
                layer = caches[k].layers[index]
                if type(layer) is not DynamicLayer:
                    raise DajError(f"the hf engine decodes models with full-attention caches only; this model's "
                                   f"layer {index} uses {type(layer).__name__}", field="model")
                buffers[0][r, :, start[r]:width] = layer.keys[0]
                buffers[1][r, :, start[r]:width] = layer.values[0]
            layers.append(_room_layer_class()(buffers[0], buffers[1], width))
        mask = torch.zeros((len(owner), width), dtype=torch.long)
        for r, s in enumerate(start):
            mask[r, s:] = 1
        cache = DynamicCache()
        cache.layers = layers
        return _Rows(cache, mask.to(self.device), start, [ids[k] for k in owner])

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
        """requests: [row, context ids, options ids], at most one per row. Each reuses its row's cache for
        the longest prefix its context shares with what the row holds (the rest of the row is masked
        out); the context's remaining tokens and the options then run in one forward (_score_tree)."""
        import torch

        keep = [r for r, _, _ in requests]
        if keep != list(range(len(rows.tokens))):
            rows.cache.reorder_cache(torch.tensor(keep, dtype=torch.long, device=self.device))
        mask = rows.mask[keep].clone()
        reuse = []
        for q, (r, ctx, _) in enumerate(requests):
            held, n = rows.tokens[r], 0
            limit = min(len(held), len(ctx) - 1)
            while n < limit and held[n] == ctx[n]:
                n += 1
            mask[q, rows.start[r] + n:] = 0
            reuse.append(n)
        return self._score_tree(rows.cache, mask, reuse, [ctx[n:] for (_, ctx, _), n in zip(requests, reuse, strict=True)],
                                [o for _, _, o in requests])

    def _score_tree(self, cache, cache_mask, reuse: list[int], tails: list[list[int]],
                    opts: list[list[list[int]]]) -> list[list[float]]:
        """Option log-probabilities in one forward on `cache` (row q holds `reuse[q]` context tokens where
        cache_mask[q] is 1): row q runs its context's remaining tokens (`tails[q]`, at least one), then
        every option but its last token, each option attending to the cache, the tail and its own earlier
        tokens only (a tree attention mask; positions continue the context for every option)."""
        import torch

        if any(not o for row in opts for o in row):
            raise DajError("an option to score is empty", field="options")
        if any(not t for t in tails):
            raise DajError("a context to score is empty", field="prompt")
        dev, batch = self.device, len(tails)
        lengths = [len(t) + sum(len(o) - 1 for o in row) for t, row in zip(tails, opts, strict=True)]
        width = max(lengths)
        ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)
        pos = torch.zeros((batch, width), dtype=torch.long)
        allowed = torch.eye(width, dtype=torch.bool).repeat(batch, 1, 1)  # padding sees itself only
        logit_rows, logit_cols, targets, owner = [], [], [], []  # one entry per scored option token
        for q, (tail, row) in enumerate(zip(tails, opts, strict=True)):
            t, ctx_len = len(tail), reuse[q] + len(tail)
            ids[q, :t] = torch.tensor(tail)
            pos[q, :t] = torch.arange(reuse[q], ctx_len)
            allowed[q, :t, :t] = torch.ones((t, t), dtype=torch.bool).tril()
            at = t
            for i, o in enumerate(row):
                m = len(o) - 1
                logit_rows.append(q), logit_cols.append(t - 1), targets.append(o[0]), owner.append((q, i))
                if m:
                    ids[q, at:at + m] = torch.tensor(o[:-1])
                    pos[q, at:at + m] = torch.arange(ctx_len, ctx_len + m)
                    allowed[q, at:at + m, :t] = True
                    allowed[q, at:at + m, at:at + m] = torch.ones((m, m), dtype=torch.bool).tril()
                    for k in range(m):
                        logit_rows.append(q), logit_cols.append(at + k), targets.append(o[k + 1]), owner.append((q, i))
                at += m
        valid = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
        old = cache_mask.bool().to("cpu")[:, None, :].expand(batch, width, -1) & valid[:, :, None]
        full = torch.cat([old, allowed], dim=-1)[:, None]
        with torch.no_grad():
            logits = self.model(input_ids=ids.to(dev), attention_mask=self._attention_mask(full.to(dev)),
                                position_ids=pos.to(dev), use_cache=True, **{self._cache_kw: cache}).logits
            picked = selective_log_softmax()(logits[torch.tensor(logit_rows), torch.tensor(logit_cols)].float(),
                                             torch.tensor(targets, device=dev)).tolist()
        scores = [[0.0] * len(row) for row in opts]
        for (q, i), value in zip(owner, picked, strict=True):
            scores[q][i] += value
        return scores

    def _attention_mask(self, allowed):
        """A (batch, 1, queries, keys) boolean mask (True = attend) in the form the model's attention takes."""
        import torch

        impl = getattr(self.model.config, "_attn_implementation", "sdpa")
        if impl == "sdpa":
            return allowed
        if impl == "eager":
            dtype = next(self.model.parameters()).dtype
            return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
                ~allowed, torch.finfo(dtype).min)
        raise DajError(f"the hf engine scores options with sdpa or eager attention, not {impl!r}", field="model")

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
        """score_ids for several contexts: each prefilled alone but for its last token, which runs with
        the options of `batch_size` contexts in one forward (_score_tree)."""
        import torch

        size = batch_size or self.batch_size
        if size < 1:
            raise DajError(f"batch_size must be >= 1, got {size}", field="batch_size")
        if any(len(c) < 2 for c in ctxs):
            raise DajError("a context to score needs at least two tokens", field="prompt")
        if any(not o for row in opts for o in row):
            raise DajError("an option to score is empty", field="options")
        out: list[list[float]] = [[] for _ in ctxs]
        order = sorted(range(len(ctxs)), key=lambda i: len(ctxs[i]))  # little padding per chunk
        for start in range(0, len(order), size):
            chunk = [i for i in order[start:start + size] if opts[i]]
            if not chunk:
                continue
            heads = [ctxs[i][:-1] for i in chunk]
            with torch.no_grad():
                caches, _ = self._prefill(heads)
                rows = self._stack(caches, heads, list(range(len(chunk))))
            scores = self._score_tree(rows.cache, rows.mask, [len(h) for h in heads], [ctxs[i][-1:] for i in chunk],
                                      [opts[i] for i in chunk])
            for i, row in zip(chunk, scores, strict=True):
                out[i] = row
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

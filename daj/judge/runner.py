"""Ask the judge: batch prompts through an Engine, parse, force a selection if asked, cache, count.

Forced selection (judge.force_selection): a small judge rarely writes the closing tag. When a
response has no valid selection, the runner appends `<selection>` after the sampled reasoning and
asks the engine (`score_continuations`, hf) for the log-probability of each `K</selection>`,
K = 1..number of candidates; the likeliest K is appended, so the final text parses. With
judge.force_sampling, K is instead drawn from those probabilities at the judge's temperature (as
sampling would continue; seeded per response): a near-random judge then still gives the varied
answers that preference pairs need, where the likeliest index is nearly always the same position. The response keeps
`raw_text` and `raw_selection` (None = the model itself made a format error) and `forced=True`.

Selection only (judge.max_new_tokens: 0, needs force_selection): nothing is generated; every
response is `<selection>K</selection>` with K forced as above from one scoring of the prompt, so a
request costs one prefill whatever its `n` (the n rollouts draw K separately).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from daj.engines.base import Chat, Completion, Engine, SamplingParams
from daj.errors import DajError
from daj.judge.cache import JudgeCache, cache_key, fingerprint
from daj.judge.parse import CLOSE, OPEN, parse_selection
from daj.judge.voting import stable_seed


@dataclass(frozen=True)
class JudgeSettings:
    """Decoding and prompt settings of the judge (params judge.*)."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    repetition_penalty: float = 1.05
    max_new_tokens: int = 8192
    force_selection: bool = False
    max_prompt_chars: int = 6000
    force_sampling: bool = False

    @classmethod
    def from_params(cls, params) -> JudgeSettings:
        kw = {}
        for name, kind in (("temperature", float), ("top_p", float), ("top_k", int),
                           ("repetition_penalty", float), ("max_new_tokens", int),
                           ("force_selection", bool), ("max_prompt_chars", int)):
            value = params.get_path(f"judge.{name}")
            ok = isinstance(value, bool) if kind is bool else (
                isinstance(value, int | float) and not isinstance(value, bool)
                and (kind is float or float(value).is_integer()))
            if not ok:
                raise DajError(f"expected {kind.__name__}, got {value!r}", path=params.path, field=f"judge.{name}")
            kw[name] = kind(value)
        if kw["max_new_tokens"] < 0 or (kw["max_new_tokens"] == 0 and not kw["force_selection"]):
            raise DajError(f"expected >= 1, or 0 (selection only) with judge.force_selection: true; got "
                           f"{kw['max_new_tokens']}", path=params.path, field="judge.max_new_tokens")
        sampling = params.get_path("judge.force_sampling", False)
        if not isinstance(sampling, bool):
            raise DajError(f"expected bool, got {sampling!r}", path=params.path, field="judge.force_sampling")
        return cls(**kw, force_sampling=sampling)

    def sampling(self, n: int, seed: int) -> SamplingParams:
        return SamplingParams(n=n, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              repetition_penalty=self.repetition_penalty,
                              max_new_tokens=self.max_new_tokens, seed=seed)


@dataclass(frozen=True)
class JudgeRequest:
    """One judge prompt over `n_candidates` shown candidates, answered `n` times."""

    messages: Chat
    n_candidates: int
    n: int = 1
    seed: int = 0


@dataclass
class JudgeResponse:
    text: str                 # the response (with the forced selection appended when forced)
    selection: int | None     # parsed from `text`; None = format error
    raw_text: str             # what the model generated
    raw_selection: int | None  # parsed from `raw_text`
    forced: bool
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class CallStats:
    """Judge cost: responses used, prompts sent to the model now, served from cache, tokens."""

    responses: int = 0
    model_calls: int = 0
    cache_hits: int = 0
    forced: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: CallStats) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def to_dict(self) -> dict:
        return asdict(self)


def force_prefix(raw: str) -> str:
    """The reasoning plus an opening `<selection>` tag placed outside any code fence."""
    text = raw.rstrip()
    if text.endswith(OPEN):
        text = text[: -len(OPEN)].rstrip()
    if text.count("```") % 2:
        text += "\n```"
    return (text + "\n" if text else "") + OPEN


class JudgeRunner:
    """Sends judge requests to an engine, with caching, parsing and forced selection."""

    def __init__(self, engine: Engine, settings: JudgeSettings, cache: JudgeCache | None = None,
                 batch_size: int = 16, progress: bool = False):
        if settings.force_selection and not callable(getattr(engine, "score_continuations", None)):
            raise DajError(f"judge.force_selection needs an engine that scores continuations (the hf "
                           f"backend); engine {engine.name!r} cannot", field="judge.force_selection")
        if settings.max_new_tokens == 0 and not settings.force_selection:
            raise DajError("judge.max_new_tokens 0 (selection only) needs judge.force_selection: true",
                           field="judge.max_new_tokens")
        self.engine, self.settings = engine, settings
        self.cache = cache if cache is not None else JudgeCache(None)
        self.batch_size, self.progress = batch_size, progress

    def _key(self, req: JudgeRequest) -> str:
        return cache_key(messages=req.messages, model=self.engine.name,
                         sampling=self.settings.sampling(req.n, req.seed).to_dict(),
                         force=self.settings.force_selection, force_sampling=self.settings.force_sampling,
                         k=req.n_candidates)

    def _pick(self, scores: list[float], salt: str) -> int:
        """The forced index: the likeliest, or a draw from the options' probabilities at the judge's
        temperature when judge.force_sampling is on (seeded by `salt`)."""
        if not self.settings.force_sampling or self.settings.temperature <= 0:
            return max(range(len(scores)), key=lambda i: (scores[i], -i))
        z = np.asarray(scores, dtype=np.float64) / self.settings.temperature
        p = np.exp(z - z.max())
        return int(np.random.default_rng(stable_seed(salt)).choice(len(scores), p=p / p.sum()))

    def _finish(self, req: JudgeRequest, completion, salt: str = "",
                scored: dict[str, list[float]] | None = None) -> JudgeResponse:
        """Parse a completion; force the selection if asked (`scored` memoises scores per prefix)."""
        raw = completion.text
        raw_sel = parse_selection(raw, req.n_candidates)
        text, sel, forced = raw, raw_sel, False
        if raw_sel is None and self.settings.force_selection:
            prefix = force_prefix(raw)
            options = [f"{k}{CLOSE}" for k in range(1, req.n_candidates + 1)]
            scored = {} if scored is None else scored
            if prefix not in scored:
                scored[prefix] = self.engine.score_continuations(req.messages, prefix, options)
            scores = scored[prefix]
            best = self._pick(scores, salt)
            text, forced = prefix + options[best], True
            sel = parse_selection(text, req.n_candidates)
            assert sel == best + 1, "a forced selection must parse"
        return JudgeResponse(text=text, selection=sel, raw_text=raw, raw_selection=raw_sel, forced=forced,
                             finish_reason=completion.finish_reason, prompt_tokens=completion.prompt_tokens,
                             completion_tokens=completion.completion_tokens)

    def _complete(self, requests: list[JudgeRequest], n: int, seed: int) -> list[list[Completion]]:
        """The engine's completions, or in selection-only mode n empty ones (nothing to generate)."""
        if self.settings.max_new_tokens > 0:
            return self.engine.generate([r.messages for r in requests], self.settings.sampling(n, seed))
        count = getattr(self.engine, "prompt_tokens", None)
        out = []
        for req in requests:
            tokens = count(req.messages, OPEN) if callable(count) else 0
            out.append([Completion(text="", finish_reason="length", prompt_tokens=tokens, completion_tokens=0)] * n)
        return out

    def respond(self, requests: list[JudgeRequest]) -> tuple[list[list[JudgeResponse]], CallStats]:
        """`n` responses per request. Identical requests are generated once; cached ones not at all."""
        stats = CallStats()
        keys = [self._key(r) for r in requests]
        found: dict[str, list[JudgeResponse]] = {}
        todo: dict[tuple[int, int], dict[str, JudgeRequest]] = defaultdict(dict)
        for key, req in zip(keys, requests, strict=True):
            if key in found or any(key in group for group in todo.values()):
                continue
            hit = self.cache.get(key)
            if hit is not None:
                found[key] = [JudgeResponse(**r) for r in hit]
                stats.cache_hits += 1
            else:
                todo[(req.n, req.seed)][key] = req
        total = sum(len(group) for group in todo.values())
        bar = tqdm(total=total, desc="judge", unit="prompt", disable=not self.progress or total == 0, leave=False)
        for (n, seed), group in todo.items():
            items = list(group.items())
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                outputs = self._complete([r for _, r in chunk], n, seed)
                for (key, req), completions in zip(chunk, outputs, strict=True):
                    if len(completions) != n:
                        raise RuntimeError(f"engine returned {len(completions)} completions, expected {n}")
                    scored: dict[str, list[float]] = {}
                    responses = [self._finish(req, c, f"{key}#{k}", scored) for k, c in enumerate(completions)]
                    self.cache.put(key, [asdict(r) for r in responses])
                    found[key] = responses
                stats.model_calls += len(chunk)
                bar.update(len(chunk))
        bar.close()
        out = [found[k] for k in keys]
        for responses in out:
            for r in responses:
                stats.responses += 1
                stats.forced += int(r.forced)
                stats.prompt_tokens += r.prompt_tokens
                stats.completion_tokens += r.completion_tokens
        return out, stats



def judge_engine_spec(params, adapter: str | None) -> dict:
    """The make_engine spec of the judge: judge.backend/model, the adapter, judge.engine_options."""
    options = params.get_path("judge.engine_options", {}) or {}
    if not isinstance(options, dict):
        raise DajError(f"expected a mapping, got {options!r}", path=params.path, field="judge.engine_options")
    return {"backend": params.get_path("judge.backend"), "model": params.get_path("judge.model"),
            "adapter": adapter, **options}


def judge_tokenizer(engine: Engine, params):
    """The tokenizer whose chat template renders judge prompts: the engine's own when it has one."""
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "apply_chat_template"):
        return tokenizer
    from daj.models.loading import load_tokenizer

    ref = params.get_path("judge.tokenizer", None) or params.get_path("judge.model")
    try:
        return load_tokenizer(ref)
    except (OSError, ValueError) as e:
        raise DajError(f"cannot load the judge tokenizer {ref!r} to render prompts: {e}", path=params.path,
                       field="judge.tokenizer") from None


def judge_name(model: str, adapter: str | None) -> str:
    """The engine name used in cache keys: references plus content digests of local checkpoints."""
    name = model + (f"@{fp}" if (fp := fingerprint(model)) else "")
    if adapter:
        name += f"+{adapter}" + (f"@{fp}" if (fp := fingerprint(adapter)) else "")
    return name


def build_runner(params, adapter: str | None, progress: bool = True) -> tuple[JudgeRunner, object]:
    """(runner, tokenizer) for the judge described by params.yaml, with the persistent cache."""
    from daj.engines.registry import make_engine

    settings = JudgeSettings.from_params(params)
    spec = judge_engine_spec(params, adapter)
    engine = make_engine(spec)
    engine.name = judge_name(spec["model"], adapter)
    cache_dir = params.get_path("judge.cache_dir", None)
    return (JudgeRunner(engine, settings, JudgeCache(cache_dir), progress=progress),
            judge_tokenizer(engine, params))

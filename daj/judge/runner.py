"""Ask the judge: batch prompts through an Engine, parse, force a selection if asked, cache, count.

Two modes (judge.mode):

- `reason` (default): the engine writes a review (at most judge.max_new_tokens tokens) that should
  end with `<selection>K</selection>`. With judge.force_selection, a response without a valid
  selection is completed: the runner appends `<selection>` after the sampled reasoning and asks the
  engine (`score_continuations`, hf) for the log-probability of each `K</selection>`, K = 1..number
  of candidates; the chosen K is appended, so the final text parses. The response keeps `raw_text`
  and `raw_selection` (None = the model itself made a format error) and `forced=True`.
- `select`: nothing is generated; every response is `<selection>K</selection>` with K chosen from
  one scoring of the prompt (the options after `<selection>`), so a request costs one prefill
  whatever its `n` (the n rollouts choose K separately). judge.max_new_tokens and
  judge.force_selection are not used.

How K is chosen from the options' log-probabilities (both modes): the likeliest, or with
judge.force_sampling a draw at the judge's temperature (as sampling would continue; seeded per
response): a near-random judge then still gives the varied answers that preference pairs need,
where the likeliest index is nearly always the same position. The normalised option
log-probabilities are kept on the response (`option_logprobs`) for swap-combined selection
(daj.judge.swap).
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from daj.config import Decoding, JudgeConfig
from daj.engines.base import Chat, Completion, Engine, SamplingParams
from daj.errors import DajError
from daj.hashing import checkpoint_digest, json_digest
from daj.judge.cache import JudgeCache, cache_key
from daj.judge.parse import CLOSE, OPEN, parse_selection
from daj.judge.voting import stable_seed


def sampling_of(judge: JudgeConfig, n: int, seed: int) -> SamplingParams:
    """The engine settings of `n` judge responses with base seed `seed`."""
    return SamplingParams(n=n, seed=seed, **{k: getattr(judge, k) for k in Decoding.model_fields})


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
    # when forced: log-probabilities of the options 1..K after `<selection>`, normalised over them
    option_logprobs: list[float] | None = None


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


def normalised(scores: list[float]) -> list[float]:
    """Log-probabilities renormalised over the options (log-softmax)."""
    z = np.asarray(scores, dtype=np.float64)
    top = z.max()
    return (z - top - np.log(np.exp(z - top).sum())).tolist()


class JudgeRunner:
    """Sends judge requests to an engine, with caching, parsing and forced selection.

    `batch_size` prompts go to the engine per call (it chunks them further) and are cached together;
    `label` names the judge in progress bars (default: the engine name).
    """

    def __init__(self, engine: Engine, settings: JudgeConfig, cache: JudgeCache | None = None,
                 batch_size: int = 64, progress: bool = False, label: str | None = None):
        if settings.scores_options and not callable(getattr(engine, "score_continuations", None)):
            field = "mode" if settings.selection_only else "force_selection"
            what = "mode select" if settings.selection_only else "force_selection"
            raise DajError(f"{what} needs an engine that scores continuations (the hf backend); engine "
                           f"{engine.name!r} cannot", field=field)
        self.engine, self.settings = engine, settings
        self.cache = cache if cache is not None else JudgeCache(None)
        self.batch_size, self.progress = batch_size, progress
        self.label = label or engine.name
        generate = getattr(engine, "generate", None)
        self._scores_after_generate = generate is not None and "continuations" in inspect.signature(generate).parameters

    def _parts(self, req: JudgeRequest) -> dict:
        """Everything but the engine that decides a request's answers."""
        # select mode keeps the key it had as `max_new_tokens: 0` with forced selection
        s = self.settings
        sampling = sampling_of(s, req.n, req.seed).to_dict()
        if s.selection_only:
            sampling["max_new_tokens"] = 0
        return {"messages": req.messages, "sampling": sampling, "force": s.scores_options,
                "force_sampling": s.force_sampling, "k": req.n_candidates}

    def _key(self, req: JudgeRequest) -> str:
        """The cache key: the request's parts and the engine's name (model and adapter digests)."""
        return cache_key(model=self.engine.name, **self._parts(req))

    def _draw_key(self, req: JudgeRequest) -> str:
        """What seeds a request's forced draws: its parts without the engine, so that a judge whose
        weights moved by a rounding error draws with the same uniforms (a decision then flips only where
        a uniform falls within that error of a boundary), and two judges share them on a prompt."""
        return cache_key(**self._parts(req))

    def _pick(self, scores: list[float], salt: str) -> int:
        """The forced index: the likeliest, or a draw from the options' probabilities at the judge's
        temperature when judge.force_sampling is on (seeded by `salt`)."""
        return pick_option(scores, salt, self.settings)

    def _finish(self, req: JudgeRequest, completion, salt: str = "",
                scored: dict[str, list[float]] | None = None) -> JudgeResponse:
        """Parse a completion; force the selection if asked (`scored` memoises scores per prefix; an
        engine that scored the options after the completion left them in its `extra`)."""
        raw = completion.text
        raw_sel = parse_selection(raw, req.n_candidates)
        text, sel, forced, logprobs = raw, raw_sel, False, None
        if raw_sel is None and self.settings.scores_options:
            prefix = force_prefix(raw)
            options = self._options(req.n_candidates)
            scored = {} if scored is None else scored
            if completion.extra.get("scored_prefix") == prefix:
                scored[prefix] = completion.extra["option_scores"]
            if prefix not in scored:
                scored[prefix] = self.engine.score_continuations(req.messages, prefix, options)
            scores = scored[prefix]
            best = self._pick(scores, salt)
            text, forced, logprobs = prefix + options[best], True, normalised(scores)
            sel = parse_selection(text, req.n_candidates)
            assert sel == best + 1, "a forced selection must parse"
        return JudgeResponse(text=text, selection=sel, raw_text=raw, raw_selection=raw_sel, forced=forced,
                             finish_reason=completion.finish_reason, prompt_tokens=completion.prompt_tokens,
                             completion_tokens=completion.completion_tokens, option_logprobs=logprobs)

    @staticmethod
    def _options(k: int) -> list[str]:
        """The forced-selection options after `<selection>`: `1</selection>` .. `K</selection>`."""
        return [f"{i}{CLOSE}" for i in range(1, k + 1)]

    def _complete(self, requests: list[JudgeRequest], n: int, seed: int) -> list[list[Completion]]:
        """The engine's completions, or in selection-only mode n empty ones (nothing to generate). An
        engine that can score options right after generating (hf: on its decoding cache) does the
        forced selections' scoring there."""
        if not self.settings.selection_only:
            params = sampling_of(self.settings, n, seed)
            prompts = [r.messages for r in requests]
            if self.settings.force_selection and self._scores_after_generate:
                def ask(i: int, text: str) -> tuple[str, list[str]] | None:
                    k = requests[i].n_candidates
                    return None if parse_selection(text, k) is not None else (force_prefix(text), self._options(k))

                return self.engine.generate(prompts, params, continuations=ask)
            return self.engine.generate(prompts, params)
        count = getattr(self.engine, "prompt_tokens", None)
        out = []
        for req in requests:
            tokens = count(req.messages, OPEN) if callable(count) else 0
            out.append([Completion(text="", finish_reason="length", prompt_tokens=tokens, completion_tokens=0)] * n)
        return out

    def _score_chunk(self, requests: list[JudgeRequest]) -> list[dict[str, list[float]]] | None:
        """Selection-only mode: the option scores of a whole chunk in one padded forward, when the
        engine can batch them (equal to one forward per prompt up to float rounding; a chunk of one
        prompt takes exactly the one-prompt path)."""
        batch = getattr(self.engine, "score_continuations_batch", None)
        if not self.settings.selection_only or len(requests) < 2 or not callable(batch):
            return None
        prefix = force_prefix("")
        scores = batch([(r.messages, prefix, self._options(r.n_candidates)) for r in requests])
        return [{prefix: s} for s in scores]

    def _store(self, items: list[tuple[str, list[dict]]]) -> None:
        """Cache a chunk's answers: in one transaction when the cache can (JudgeCache.put_many)."""
        put_many = getattr(self.cache, "put_many", None)
        if callable(put_many):
            put_many(items)
        else:
            for key, value in items:
                self.cache.put(key, value)

    def respond(self, requests: list[JudgeRequest], desc: str | None = None,
                need_logprobs: bool = False) -> tuple[list[list[JudgeResponse]], CallStats]:
        """`n` responses per request. Identical requests are generated once; cached ones not at all.

        `desc` labels the progress bar (default: `judge <label>`). With `need_logprobs`, a cached
        forced response stored without its option log-probabilities (an older cache) is recomputed.
        """
        stats = CallStats()
        keys = [self._key(r) for r in requests]
        found: dict[str, list[JudgeResponse]] = {}
        todo: dict[tuple[int, int], dict[str, JudgeRequest]] = defaultdict(dict)
        for key, req in zip(keys, requests, strict=True):
            if key in found or any(key in group for group in todo.values()):
                continue
            hit = self.cache.get(key)
            if hit is not None and need_logprobs and any(r["forced"] and r.get("option_logprobs") is None
                                                         for r in hit):
                hit = None
            if hit is not None:
                found[key] = [JudgeResponse(**r) for r in hit]
                stats.cache_hits += 1
            else:
                todo[(req.n, req.seed)][key] = req
        total = sum(len(group) for group in todo.values())
        bar = tqdm(total=total, desc=desc or f"judge {self.label}", unit="prompt",
                   disable=not self.progress or total == 0, leave=False)
        for (n, seed), group in todo.items():
            items = list(group.items())
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                outputs = self._complete([r for _, r in chunk], n, seed)
                prefetched = self._score_chunk([r for _, r in chunk])
                finished = []
                for i, ((key, req), completions) in enumerate(zip(chunk, outputs, strict=True)):
                    if len(completions) != n:
                        raise RuntimeError(f"engine returned {len(completions)} completions, expected {n}")
                    scored: dict[str, list[float]] = dict(prefetched[i]) if prefetched else {}
                    salt = self._draw_key(req)
                    responses = [self._finish(req, c, f"{salt}#{k}", scored) for k, c in enumerate(completions)]
                    finished.append((key, [asdict(r) for r in responses]))
                    found[key] = responses
                self._store(finished)
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


def pick_option(scores: list[float], salt: str, settings: JudgeConfig) -> int:
    """The chosen option index: the likeliest (ties: the first), or with force_sampling a draw from
    the options' probabilities at the judge's temperature, seeded by `salt`."""
    if not settings.force_sampling or settings.temperature <= 0:
        return max(range(len(scores)), key=lambda i: (scores[i], -i))
    z = np.asarray(scores, dtype=np.float64) / settings.temperature
    p = np.exp(z - z.max())
    return int(np.random.default_rng(stable_seed(salt)).choice(len(scores), p=p / p.sum()))


# engine options that change speed or robustness, never the answers (left out of cache names)
_NEUTRAL_OPTIONS = {"concurrency", "max_retries", "backoff_s", "timeout_s", "api_key_env", "batch_size", "device",
                    "name"}


def engine_cache_name(spec: dict) -> str:
    """The engine name used in cache keys: model and adapter references plus content digests of local
    checkpoints; other backends than hf also carry the backend and the options that can change the
    answers (the server URL, extra request fields, ...), so that answers of different engines on the
    same model are never mixed. (hf keeps the bare name it always had, so existing caches stay valid.)"""
    name = judge_name(spec["model"], spec.get("adapter"))
    if spec.get("backend", "hf") == "hf":
        return name
    options = {k: v for k, v in spec.items() if k not in {"backend", "model", "adapter"} | _NEUTRAL_OPTIONS}
    return f"{spec['backend']}:{name}" + (f"{{{json_digest(options, 12)}}}" if options else "")


def judge_tokenizer(engine: Engine | None, judge: JudgeConfig):
    """The tokenizer whose chat template renders judge prompts: the engine's own when it has one,
    else judge.tokenizer (or judge.model) loaded."""
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "apply_chat_template"):
        return tokenizer
    from daj.models.loading import load_tokenizer

    ref = judge.tokenizer or judge.model
    try:
        return load_tokenizer(ref)
    except (OSError, ValueError) as e:
        raise DajError(f"cannot load the judge tokenizer {ref!r} to render prompts: {e}",
                       field="tokenizer") from None


def judge_name(model: str, adapter: str | None) -> str:
    """Model and adapter references plus content digests of local checkpoints."""
    name = model + (f"@{fp}" if (fp := checkpoint_digest(model)) else "")
    if adapter:
        name += f"+{adapter}" + (f"@{fp}" if (fp := checkpoint_digest(adapter)) else "")
    return name


def make_named_engine(spec: dict) -> Engine:
    """make_engine(spec), named for the cache (engine_cache_name). A bad option is a DajError whose
    field is the option's name in the spec."""
    from daj.engines.registry import make_engine

    engine = make_engine(spec)
    engine.name = engine_cache_name(spec)
    return engine


def build_runner(judge: JudgeConfig, adapter: str | None, cache_dir: str | None, progress: bool = True,
                 where: str = "params.yaml") -> tuple[JudgeRunner, object]:
    """(runner, tokenizer) of the judge, with the persistent cache in `cache_dir` (None = none).
    Errors name the judge's key in `where` (judge.<key>, judge.engine_options.<option>)."""
    try:
        engine = make_named_engine(judge.engine_spec(adapter))
    except DajError as e:
        option = e.field or "backend"
        under = "judge.engine_options" if option in judge.engine_options else "judge"
        raise DajError(e.message, field=option).at(path=where, under=under) from None
    try:
        runner = JudgeRunner(engine, judge, JudgeCache(cache_dir), progress=progress,
                             label=judge.model + (f"+{adapter}" if adapter else ""))
        return runner, judge_tokenizer(engine, judge)
    except DajError as e:
        engine.close()
        raise e.at(path=where, under="judge") from None

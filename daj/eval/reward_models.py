"""The paper's reward-model baselines for Best-of-N (Table 2): every candidate scored alone, the best wins.

`prm` (Skywork-o1-Open-PRM style, bon.prm): a process reward model reads the problem and a candidate
and gives a reward per step.
- Input, as Skywork's `prepare_input`: the tokenizer's BOS text (if any) + the statement + "\\n"
  (the statement cut to `max_prompt_chars`, middle truncation), then the steps.
- Steps: the code split at `step` (Skywork's separator, a newline): one line per step. Blank lines
  and trailing separators are not steps (Skywork's code would score an empty step at each). Each
  step's tokens are followed by the separator's token, and the step's reward is the sigmoid of the
  value head at that token. An input over `max_tokens` drops its earliest steps.
- One score per candidate: `aggregation` of the step rewards: `min` (the default: a program is as
  good as its weakest line), `mean`, `last` (the value after the whole program, an outcome
  estimate) or `prod`. A candidate without a step scores 0.

`grm` (DeepSeek-GRM style, bon.grm): a generative pointwise reward model reads the problem and one
candidate, writes principles and a critique, and ends with a score from 1 to 10 as `\\boxed{N}`
(the prompt is ours). `samples` answers per candidate are summed (DeepSeek-GRM's voting by sum).
An answer without a parsable score counts 0, below the scale, and is counted (`unparsable`).

Both pick the best score; ties are broken at random with the pipeline's seed (daj.eval.bon). A
problem whose candidates all pass or all fail is not scored (no pick can change its verdict).
Results are cached in `<caches.judge>/reward.sqlite` (key: model name with checkpoint digests, the
exact input and the decoding settings), so a rerun costs no model call; calls and cache hits are
counted like judge calls (CallStats) and go to logs/, tokens to the cost file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Protocol

from daj.config import BonConfig, GrmConfig, PrmConfig
from daj.engines.base import Chat, SamplingParams
from daj.errors import DajError
from daj.hashing import json_digest, stable_seed
from daj.judge.prompt import problem_fields, share_budget, truncate_middle
from daj.judge.runner import CallStats, make_named_engine
from daj.store import Store

SCORE_RANGE = (1.0, 10.0)
UNPARSABLE = 0.0   # below the scale: an answer without a score loses to every scored one


@dataclass
class ScoreResult:
    """Scores of a problem's candidates (in pool order), with the cost of getting them."""

    scores: list[float]
    stats: CallStats = field(default_factory=CallStats)
    unparsable: int = 0


class Scorer(Protocol):
    def score(self, problem: dict, codes: list[str]) -> ScoreResult: ...

    def close(self) -> None: ...


# ---- prm ------------------------------------------------------------------------------------------

def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def prm_input(statement: str, code: str, tokenizer, step: str = "\n",
              max_tokens: int | None = None) -> tuple[list[int], list[int]]:
    """(token ids, positions of the step-end tokens) for one candidate (module docstring)."""
    bos = tokenizer.bos_token or ""
    prompt = tokenizer.encode(bos + statement + "\n", add_special_tokens=False)
    sep = tokenizer.encode(step, add_special_tokens=False)[-1]
    steps = [tokenizer.encode(s, add_special_tokens=False) + [sep] for s in code.split(step) if s.strip()]
    while max_tokens and len(steps) > 1 and len(prompt) + sum(map(len, steps)) > max_tokens:
        steps.pop(0)
    ids, ends = list(prompt), []
    for s in steps:
        ids += s
        ends.append(len(ids) - 1)
    if max_tokens and len(ids) > max_tokens:  # one step and the prompt still too long: keep the tail
        cut = len(ids) - max_tokens
        ids, ends = ids[cut:], [e - cut for e in ends if e >= cut]
    return ids, ends


def aggregate(rewards: list[float], how: str) -> float:
    """One score from the step rewards (0 for no step)."""
    if not rewards:
        return 0.0
    if how == "min":
        return min(rewards)
    if how == "mean":
        return sum(rewards) / len(rewards)
    if how == "last":
        return rewards[-1]
    if how == "prod":
        return math.prod(rewards)
    raise ValueError(f"unknown aggregation {how!r}")


class PrmScorer:
    """bon method prm (module docstring)."""

    def __init__(self, cfg: PrmConfig, cache_dir: str | None):
        from daj.engines.reward import make_value_model

        self.cfg = cfg
        self.model = make_value_model(cfg.backend, cfg.model, cfg.random_head_seed, cfg.batch_size,
                                      cfg.tokenizer, cfg.base_url, cfg.api_key_env)
        self.store = Store(cache_dir, "reward")

    def step_rewards(self, problem: dict, codes: list[str]) -> tuple[list[list[float]], CallStats]:
        """The step rewards of each candidate, from the cache where it has them."""
        statement = truncate_middle(problem_fields(problem)[0], self.cfg.max_prompt_chars)
        inputs = [prm_input(statement, code, self.model.tokenizer, self.cfg.step, self.cfg.max_tokens)
                  for code in codes]
        keys = [json_digest({"kind": "prm", "model": self.model.name, "ids": ids, "ends": ends})
                for ids, ends in inputs]
        stats = CallStats(responses=len(codes), prompt_tokens=sum(len(ids) for ids, _ in inputs))
        found = {k: v for k in dict.fromkeys(keys) if (v := self.store.get_json(k)) is not None}
        stats.cache_hits = sum(k in found for k in keys)
        todo = [i for i, k in enumerate(keys) if k not in found and keys.index(k) == i]
        if todo:
            values = self.model.values([inputs[i][0] for i in todo])
            for i, vals in zip(todo, values, strict=True):
                rewards = [sigmoid(vals[e]) for e in inputs[i][1]]
                self.store.put_json(keys[i], rewards)
                found[keys[i]] = rewards
            stats.model_calls = len(todo)
        return [found[k] for k in keys], stats

    def score(self, problem: dict, codes: list[str]) -> ScoreResult:
        rewards, stats = self.step_rewards(problem, codes)
        return ScoreResult([aggregate(r, self.cfg.aggregation) for r in rewards], stats)

    def close(self) -> None:
        self.model.close()


# ---- grm ------------------------------------------------------------------------------------------

GRM_TASK = """You are grading one candidate Python solution to the programming problem below.

First write the principles that matter when judging a solution to this particular problem (what \
it must compute, its constraints, its edge cases, its input and output format). Then critique the \
candidate against each principle, pointing at the lines that decide it. Finally rate how likely the \
candidate is to pass all tests, hidden ones included, on a scale from 1 (certainly wrong) to 10 \
(certainly correct), and end your answer with the score in exactly this form:
Score: \\boxed{N}"""


def grm_messages(problem: dict, code: str, max_chars: int) -> Chat:
    """The pointwise grading chat for one candidate (statement and code share `max_chars`)."""
    statement, starter, tests = problem_fields(problem)
    fields = [statement, tests, code]
    statement, tests, code = [truncate_middle(f, lim) for f, lim in
                              zip(fields, share_budget([len(f) for f in fields], max_chars), strict=True)]
    parts = [GRM_TASK, "", "## Problem", f"Title: {problem.get('title') or '(untitled)'}", "", statement]
    if starter:
        parts += ["", "## Starter code", f"```python\n{starter}\n```"]
    if tests:
        parts += ["", "## Example tests", tests]
    parts += ["", "## Candidate", f"```python\n{code}\n```"]
    return [{"role": "user", "content": "\n".join(parts)}]


_BOXED = re.compile(r"\\boxed\{\s*([-+]?\d+(?:\.\d+)?)\s*\}")
_LABELLED = re.compile(r"\bscores?\s*[:=]\s*\**\s*([-+]?\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_score(text: str, low: float = SCORE_RANGE[0], high: float = SCORE_RANGE[1]) -> float | None:
    """The last `\\boxed{N}` in the answer, else the last `Score: N`; None when there is none or it is
    outside [low, high]."""
    found = _BOXED.findall(text) or _LABELLED.findall(text)
    if not found:
        return None
    value = float(found[-1])
    return value if low <= value <= high else None


class GrmScorer:
    """bon method grm (module docstring)."""

    def __init__(self, cfg: GrmConfig, cache_dir: str | None, seed: int):
        self.cfg, self.seed = cfg, seed
        self.engine = make_named_engine(cfg.engine_spec())
        self.store = Store(cache_dir, "reward")

    def score(self, problem: dict, codes: list[str]) -> ScoreResult:
        sampling = SamplingParams(n=self.cfg.samples, seed=stable_seed(self.seed, "grm", problem["id"]) % 2**31,
                                  **{k: getattr(self.cfg, k) for k in SamplingParams.model_fields
                                     if k not in ("n", "seed")})
        chats = [grm_messages(problem, code, self.cfg.max_prompt_chars) for code in codes]
        keys = [json_digest({"kind": "grm", "model": self.engine.name, "messages": c, "sampling": sampling.to_dict()})
                for c in chats]
        found = {k: v for k in dict.fromkeys(keys) if (v := self.store.get_json(k)) is not None}
        stats = CallStats(cache_hits=sum(k in found for k in keys))
        todo = [i for i, k in enumerate(keys) if k not in found and keys.index(k) == i]
        if todo:
            outputs = self.engine.generate([chats[i] for i in todo], sampling)
            for i, completions in zip(todo, outputs, strict=True):
                answers = [{"text": c.text, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}
                           for c in completions]
                self.store.put_json(keys[i], answers)
                found[keys[i]] = answers
            stats.model_calls = len(todo)
        scores, unparsable = [], 0
        for k in keys:
            parsed = [parse_score(a["text"]) for a in found[k]]
            unparsable += sum(p is None for p in parsed)
            scores.append(sum(UNPARSABLE if p is None else p for p in parsed))
            stats.responses += len(parsed)
            stats.prompt_tokens += sum(a["prompt_tokens"] for a in found[k])
            stats.completion_tokens += sum(a["completion_tokens"] for a in found[k])
        return ScoreResult(scores, stats, unparsable)

    def close(self) -> None:
        self.engine.close()


def make_scorers(bon: BonConfig, cache_dir: str | None, seed: int) -> dict[str, Scorer]:
    """The scorers of the reward-model methods in bon.methods; a bad setting is a DajError whose field
    is its key under bon.prm / bon.grm."""
    scorers: dict[str, Scorer] = {}
    for method, make in (("prm", lambda: PrmScorer(bon.prm, cache_dir)),
                         ("grm", lambda: GrmScorer(bon.grm, cache_dir, seed))):
        if method in bon.methods:
            try:
                scorers[method] = make()
            except DajError as e:
                raise e.at(under=f"bon.{method}") from None
    return scorers

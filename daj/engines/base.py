"""The one interface for text generation, shared by policy sampling and the judge.

Every backend takes a batch of chat prompts (lists of {"role", "content"} messages) and the same
SamplingParams, and returns, per prompt, `n` Completions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import NonNegativeInt, PositiveInt

from daj.config import SamplingConfig

Message = dict[str, str]
Chat = list[Message]


class SamplingParams(SamplingConfig):
    """One generation call's settings: the params' decoding settings (daj.config.SamplingConfig, the
    paper's defaults), the number of completions per prompt and the base seed."""

    n: PositiveInt = 1
    seed: NonNegativeInt = 0

    def to_dict(self) -> dict:
        return self.model_dump()


@dataclass
class Completion:
    """One generated continuation."""

    text: str
    finish_reason: str  # "stop" (end of sequence / stop string) or "length" (hit max_new_tokens)
    prompt_tokens: int
    completion_tokens: int
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """A text generator. `name` identifies the model (and adapter) for caches."""

    name: str

    def generate(self, prompts: list[Chat], params: SamplingParams,
                 prefixes: list[str] | None = None) -> list[list[Completion]]:
        """Return `params.n` completions per chat prompt.

        `prefixes`, when given, is text appended after the chat template's generation prompt
        (the assistant turn starts with it); completions do not repeat it.
        """
        ...

    def close(self) -> None:
        """Release model memory, servers or connections."""
        ...


@runtime_checkable
class ScoringEngine(Engine, Protocol):
    """An engine that can also score fixed continuations (used by forced selection)."""

    def score_continuations(self, prompt: Chat, prefix: str, options: list[str]) -> list[float]:
        """Total log-probability of each option text after the chat prompt plus `prefix`."""
        ...

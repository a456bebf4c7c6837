"""Online GRPO's rollout sampler: the judge being trained answers the scored files' prompts, and each
answer gets the three-level verifiable reward (`reward`).

The trainer (daj.train.rollouts, daj.train.bilevel) only sees the `SamplerFactory` interface; this
module builds it from the judge's runner, prompt and reward code (daj.judge):

  judge.backend hf      the in-memory model being trained (daj.engines.live.LiveEngine: no copy, no
                        reload), sampling from exactly the rendered prompt text the trainer scores.
  judge.backend openai  a `vllm serve --enable-lora` server (judge.base_url), to which the current
                        adapter is pushed after every optimizer step (daj.engines.live.push_adapter,
                        written under train.rollout_adapter_dir, which the server must see at the same
                        path); requests send the rows' chat `messages`.

Judge decoding follows `judge.*` (mode select draws `<selection>K</selection>` from the option
probabilities at judge.temperature). Nothing is cached: every draw asks the current weights.
"""

from __future__ import annotations

import os

from daj import artifacts
from daj.config import JudgeConfig, RewardConfig
from daj.engines.openai_engine import DEFAULT_API_KEY_ENV, DEFAULT_BASE_URL
from daj.errors import DajError
from daj.train.rollouts import Rollout, Sampler, SamplerFactory

SCORED = f"{artifacts.PAIRS}/*_scored.jsonl"


def rollout_sampler_factory(judge: JudgeConfig, reward: RewardConfig, adapter_dir: str,
                            where: str = "params.yaml") -> SamplerFactory:
    """The SamplerFactory of `judge.backend` (hf or openai); `where` names the params file in errors."""
    if judge.backend == "hf":
        return _live_factory(judge, reward)
    if judge.backend == "openai":
        return _server_factory(judge, reward, adapter_dir)
    raise DajError(f"online GRPO samples from the judge being trained: judge.backend hf (in memory) or openai "
                   f"(a vLLM server with --enable-lora), not {judge.backend!r}; or train.grpo_mode: offline",
                   path=where, field="judge.backend")


def _requests(rows: list[dict], n: int, seed: int, chat_of):
    from daj.judge.runner import JudgeRequest

    out = []
    for row in rows:
        if row.get("correct_position") not in (1, 2):
            raise DajError("online GRPO needs the scored rollouts' correct_position (1 or 2)", path=SCORED,
                           field="correct_position")
        out.append(JudgeRequest(chat_of(row), 2, n=n, seed=seed))
    return out


def _rollouts(runner, rows: list[dict], requests, reward: RewardConfig) -> list[list[Rollout]]:
    from daj.judge.reward import reward_of

    answers, _ = runner.respond(requests)
    return [[Rollout(a.text, *reward_of(a.selection, row["correct_position"], reward)) for a in group]
            for row, group in zip(rows, answers, strict=True)]


def _live_factory(judge: JudgeConfig, reward: RewardConfig) -> SamplerFactory:
    from daj.engines.live import LiveEngine, rendered
    from daj.judge.runner import JudgeRunner

    def chat_of(row: dict):
        return rendered(row["prompt"])  # the exact text the trainer scores

    def factory(model, tokenizer) -> Sampler:
        runner = JudgeRunner(LiveEngine(model, tokenizer, name="train-live"), judge, _NoCache())

        def sample(rows: list[dict], n: int, seed: int, version: int):
            return _rollouts(runner, rows, _requests(rows, n, seed, chat_of), reward)

        return sample

    return factory


def _server_factory(judge: JudgeConfig, reward: RewardConfig, adapter_dir: str) -> SamplerFactory:
    from daj.engines.live import push_adapter
    from daj.engines.registry import make_engine
    from daj.judge.runner import JudgeRunner

    spec = judge.engine_spec(None)

    def chat_of(row: dict):
        if not isinstance(row.get("messages"), list):
            raise DajError("rollouts from a server need the judge chat of each prompt: the scored rollouts "
                           "have no 'messages'", path=SCORED, field="messages")
        return row["messages"]

    def factory(model, tokenizer) -> Sampler:
        state: dict = {}
        api_key = os.environ.get(spec.get("api_key_env") or DEFAULT_API_KEY_ENV, "")
        base_url = spec.get("base_url", DEFAULT_BASE_URL)

        def sample(rows: list[dict], n: int, seed: int, version: int):
            if state.get("version") != version:  # the judge took an optimizer step: serve the new adapter
                name = f"daj-judge-v{version}"
                push_adapter(model, adapter_dir, base_url, name, previous=state.get("name"), api_key=api_key)
                engine = make_engine({**spec, "adapter": name})
                state.update(version=version, name=name, runner=JudgeRunner(engine, judge, _NoCache()))
            return _rollouts(state["runner"], rows, _requests(rows, n, seed, chat_of), reward)

        return sample

    return factory


class _NoCache:
    """A judge cache that keeps nothing: the same request after an update must reach the new weights."""

    def get(self, key: str):
        return None

    def put(self, key: str, value) -> None:
        pass

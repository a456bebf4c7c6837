"""train: fine-tune the judge (LoRA) on the lower pairs, reweighted by the upper (meta) pairs.

Reads data/pairs/{lower,upper}.jsonl (and *_scored.jsonl for kto/grpo) and the base judge
`judge.model`; writes models/judge/ (PEFT adapter + tokenizer), metrics/train.json, dvclive logs
and plot data under metrics/train/, and a resumable checkpoint in models/ckpt/.

This is the composition root of online GRPO: daj.train knows nothing of judges, so the rollout
sampler (judge prompt -> responses of the current judge -> verifiable reward) is built here from
daj.judge and daj.engines.live and injected into the trainer.
"""

from __future__ import annotations

import logging

from daj.config import ParamsConfig
from daj.errors import DajError
from daj.params import params_path

PAIRS = "data/pairs"
JUDGE_OUT = "models/judge"
CKPT = "models/ckpt"
METRICS = "metrics/train.json"
METRICS_DIR = "metrics/train"



def rollout_sampler_factory(config: ParamsConfig):
    """A daj.train.rollouts.SamplerFactory: judge responses of the model being trained to the scored
    files' prompts, with the three-level verifiable reward (`reward`).

    judge.backend hf: the in-memory model (daj.engines.live.LiveEngine). judge.backend openai: a
    `vllm serve --enable-lora` server (judge.base_url), to which the current adapter is pushed after
    every optimizer step (daj.engines.live.push_adapter, written under train.rollout_adapter_dir,
    which the server must see at the same path). Judge decoding follows judge.* (judge.mode select
    draws `<selection>K</selection>` from the option probabilities). Nothing is
    cached: every draw asks the current weights."""
    judge, levels = config.judge, config.reward
    if judge.backend == "hf":
        return _live_factory(judge, levels)
    if judge.backend == "openai":
        return _server_factory(judge, levels, judge.engine_spec(None), config.train.rollout_adapter_dir)
    raise DajError(f"online GRPO samples from the judge being trained: judge.backend hf (in memory) or openai "
                   f"(a vLLM server with --enable-lora), not {judge.backend!r}; or train.grpo_mode: offline",
                   path=str(params_path()), field="judge.backend")


def _requests(rows: list[dict], n: int, seed: int, chat_of):
    from daj.judge.runner import JudgeRequest

    out = []
    for row in rows:
        if row.get("correct_position") not in (1, 2):
            raise DajError("online GRPO needs the scored rollouts' correct_position (1 or 2)",
                           path=f"{PAIRS}/*_scored.jsonl", field="correct_position")
        out.append(JudgeRequest(chat_of(row), 2, n=n, seed=seed))
    return out


def _rollouts(runner, rows, requests, levels):
    from daj.judge.reward import reward_of
    from daj.train.rollouts import Rollout

    answers, _ = runner.respond(requests)
    return [[Rollout(a.text, *reward_of(a.selection, row["correct_position"], levels)) for a in group]
            for row, group in zip(rows, answers, strict=True)]


def _live_factory(settings, levels):
    from daj.engines.live import LiveEngine, rendered
    from daj.judge.runner import JudgeRunner

    def chat_of(row: dict):
        return rendered(row["prompt"])  # the exact text the trainer scores

    def factory(model, tokenizer):
        runner = JudgeRunner(LiveEngine(model, tokenizer, name="train-live"), settings, _NoCache())

        def sample(rows: list[dict], n: int, seed: int, version: int):
            return _rollouts(runner, rows, _requests(rows, n, seed, chat_of), levels)

        return sample

    return factory


def _server_factory(settings, levels, spec: dict, adapter_dir: str):
    import os

    from daj.engines.live import push_adapter
    from daj.engines.registry import make_engine
    from daj.judge.runner import JudgeRunner

    def chat_of(row: dict):
        if not isinstance(row.get("messages"), list):
            raise DajError("rollouts from a server need the judge chat of each prompt: the scored rollouts "
                           "have no 'messages'", path=f"{PAIRS}/*_scored.jsonl", field="messages")
        return row["messages"]

    def factory(model, tokenizer):
        state: dict = {}
        api_key = os.environ.get(spec.get("api_key_env") or "OPENAI_API_KEY", "")
        base_url = spec.get("base_url", "http://127.0.0.1:8000/v1")

        def sample(rows: list[dict], n: int, seed: int, version: int):
            if state.get("version") != version:  # the judge took an optimizer step: serve the new adapter
                name = f"daj-judge-v{version}"
                push_adapter(model, adapter_dir, base_url, name, previous=state.get("name"), api_key=api_key)
                engine = make_engine({**spec, "adapter": name})
                state.update(version=version, name=name, runner=JudgeRunner(engine, settings, _NoCache()))
            return _rollouts(state["runner"], rows, _requests(rows, n, seed, chat_of), levels)

        return sample

    return factory


class _NoCache:
    """A judge cache that keeps nothing: the same request after an update must reach the new weights."""

    def get(self, key: str):
        return None

    def put(self, key: str, value) -> None:
        pass


def main(config: ParamsConfig) -> None:
    from daj.runlog import record
    from daj.train.run import from_params, run, summary, timings

    cfg, opts = from_params(config)
    factory = rollout_sampler_factory(config) if cfg.objective == "grpo" and opts.grpo_mode == "online" else None
    result = run(cfg, opts, PAIRS, judge_out=JUDGE_OUT, metrics_json=METRICS, metrics_dir=METRICS_DIR,
                 ckpt_dir=CKPT, sampler_factory=factory)
    s = {**summary(cfg, result), **timings(result)}
    record("train", timings(result))
    logging.getLogger().info("%s/%s: %d iterations (%d optimizer steps), final loss %.4f, meta loss %.4f, "
                             "meta acc %.3f, %.3f s/optimizer step, peak RSS %.0f MiB", s["objective"],
                             s["reweight"], s["steps"], s["optimizer_steps"], s["final_loss"], s["meta_loss"],
                             s["meta_acc"], s["seconds_per_step"], s["peak_rss_mb"])


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("train", main)

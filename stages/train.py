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

from daj.errors import DajError
from daj.params import Params

PAIRS = "data/pairs"
JUDGE_OUT = "models/judge"
CKPT = "models/ckpt"
METRICS = "metrics/train.json"
METRICS_DIR = "metrics/train"


def rollout_sampler_factory(params: Params):
    """A daj.train.rollouts.SamplerFactory: judge responses of the model being trained (hf, in
    memory) to the scored files' prompts, with the three-level verifiable reward (judge.reward).

    Judge decoding follows judge.* (judge.max_new_tokens 0 = selection only: `<selection>K</selection>`
    drawn from the option probabilities, judge.force_sampling). Nothing is cached: every draw asks the
    current weights."""
    from daj.engines.live import LiveEngine, rendered
    from daj.judge.reward import RewardLevels, reward_of
    from daj.judge.runner import JudgeRequest, JudgeRunner, JudgeSettings
    from daj.train.rollouts import Rollout

    settings = JudgeSettings.from_params(params)
    levels = RewardLevels.from_params(params)

    def factory(model, tokenizer):
        runner = JudgeRunner(LiveEngine(model, tokenizer, name="train-live"), settings, _NoCache())

        def sample(rows: list[dict], n: int, seed: int, version: int) -> list[list[Rollout]]:
            requests = []
            for row in rows:
                if row.get("correct_position") not in (1, 2):
                    raise DajError("online GRPO needs the scored rollouts' correct_position (1 or 2)",
                                   path=f"{PAIRS}/*_scored.jsonl", field="correct_position")
                chat = row["messages"] if isinstance(row.get("messages"), list) else rendered(row["prompt"])
                requests.append(JudgeRequest(chat, 2, n=n, seed=seed))
            answers, _ = runner.respond(requests)
            return [[Rollout(a.text, *reward_of(a.selection, row["correct_position"], levels)) for a in group]
                    for row, group in zip(rows, answers, strict=True)]

        return sample

    return factory


class _NoCache:
    """A judge cache that keeps nothing: the same request after an update must reach the new weights."""

    def get(self, key: str):
        return None

    def put(self, key: str, value) -> None:
        pass


def main(params: Params) -> None:
    from daj.train.run import from_params, run, summary

    cfg, opts = from_params(params)
    factory = rollout_sampler_factory(params) if cfg.objective == "grpo" and opts.grpo_mode == "online" else None
    result = run(cfg, opts, PAIRS, judge_out=JUDGE_OUT, metrics_json=METRICS, metrics_dir=METRICS_DIR,
                 ckpt_dir=CKPT, sampler_factory=factory)
    s = summary(cfg, result)
    logging.getLogger().info("%s/%s: %d iterations (%d optimizer steps), final loss %.4f, meta loss %.4f, "
                             "meta acc %.3f, %.3f s/optimizer step, peak RSS %.0f MiB", s["objective"],
                             s["reweight"], s["steps"], s["optimizer_steps"], s["final_loss"], s["meta_loss"],
                             s["meta_acc"], s["seconds_per_step"], s["peak_rss_mb"])


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("train", main)

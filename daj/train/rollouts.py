"""Online GRPO: prompts, groups drawn from the CURRENT judge before each step, and their batches.

Appendix B of the paper: GRPO is "an online reinforcement learning method with verifiable rewards".
Each lower (and upper) step draws a fresh group of `group` responses per prompt from the judge as it
is now, BEFORE Betty's training_step: the batch carries the responses, their rewards, the
group-normalised advantages and the log-probs of the sampling policy (`old_token_logps`, computed
right after sampling with the same weights, at the sampling temperature), so the step itself stays
deterministic and free of side effects, as Betty's darts re-runs need.

This module does not know what a judge or a reward is: the trainer receives a `SamplerFactory` (built
from the judge's runner and reward by daj.train.online) that turns the in-memory model into a
`Sampler`: (prompt rows, n, seed, version) -> per row, n `Rollout`s with their verifiable reward.
`version` is the number of optimizer steps taken before the draw (a served adapter is re-pushed
when it changes).

Units and instances: a unit is one prompt (one `group` of the scored file: the rendered prompt, its
domain, and whatever the sampler needs, e.g. `correct_position`); the instance that gets a weight is
the prompt, shared by its `group` responses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from daj.errors import DajError
from daj.hashing import stable_seed
from daj.train.data import BatchStream, to_device
from daj.train.logprobs import collate, token_logps, tokenize_sequence
from daj.train.losses import grpo_advantages


@dataclass(frozen=True)
class Rollout:
    """One sampled judge response and its verifiable reward (label: correct / wrong / format_error)."""

    text: str
    reward: float
    label: str


Sampler = Callable[[list[dict], int, int, int], list[list[Rollout]]]
SamplerFactory = Callable[[object, object], Sampler]


class PromptData:
    """One split of online-GRPO prompts: the first row of every `group` of a scored file."""

    objective = "grpo"

    def __init__(self, tokenizer, max_length: int, rows: list[dict], domains: Sequence[str]):
        first: dict[str, dict] = {}
        for row in rows:
            first.setdefault(row["group"], row)
        if not first:
            raise DajError("no prompts for online GRPO")
        self.rows = list(first.values())
        self.tokenizer, self.max_length = tokenizer, max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.domain_index = {d: i for i, d in enumerate(domains)}
        self.instance_ids = [r["group"] for r in self.rows]
        self.instance_domains = [r["domain"] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def compute_reference(self, *args, **kwargs) -> None:
        """Nothing to precompute: reference log-probs of fresh responses are taken at sampling time."""


class RolloutStream(BatchStream):
    """Endless batches of freshly sampled groups (draw k: the prompts of BatchStream's draw k).

    `log` gets one entry per draw: {"draw", "responses", "mean_reward"}."""

    def __init__(self, data: PromptData, sampler: Sampler, model, batch_size: int, group: int, seed: int,
                 start: int = 0, device="cpu", grad_accum: int = 1, with_reference: bool = False,
                 temperature: float = 1.0):
        super().__init__(data, batch_size, seed, start=start, device=device)
        self.sampler, self.model, self.group, self.grad_accum = sampler, model, group, grad_accum
        self.with_reference, self.temperature = with_reference, temperature
        self.version_fn: Callable[[], int] | None = None  # default: optimizer steps before draw k = k // grad_accum
        self.log: list[dict] = []

    def __iter__(self):
        k = self.start
        while True:
            version = self.version_fn() if self.version_fn else k // self.grad_accum
            batch = self.make_batch(self.units_for_draw(k), stable_seed(self.seed, "rollouts", k), version)
            self.log.append({"draw": k, "responses": int(batch["rewards"].numel()),
                             "mean_reward": float(batch["rewards"].mean())})
            yield batch
            k += 1

    def make_batch(self, units: Sequence[int], seed: int, version: int = 0) -> dict:
        """Sample `group` responses per prompt from the current model, score them, and carry the
        sampling policy's (and, with a KL term, the reference's) per-token log-probs."""
        data: PromptData = self.data  # type: ignore[assignment]
        rows = [data.rows[u] for u in units]
        groups = self.sampler(rows, self.group, seed, version)
        if len(groups) != len(rows) or any(len(g) != self.group for g in groups):
            sizes = sorted({len(g) for g in groups})
            raise DajError(f"the rollout sampler returned groups of {sizes} responses for {len(rows)} prompts; "
                           f"expected {self.group} per prompt", field="train.grpo_group")
        seqs, index, domain, rewards, adv, group_mean = [], [], [], [], [], []
        for u, row, members in zip(units, rows, groups, strict=True):
            r = torch.tensor([float(m.reward) for m in members], dtype=torch.float64)
            adv += grpo_advantages(r).tolist()
            rewards += r.tolist()
            group_mean += [float(r.mean())] * len(members)
            for m in members:
                seqs.append(tokenize_sequence(data.tokenizer, row["prompt"], m.text, data.max_length))
                index.append(u)
                domain.append(data.domain_index.get(row["domain"], -1))
        seq = to_device(collate(seqs, data.pad_id), self.device)
        batch = {"index": torch.tensor(index, dtype=torch.long), "domain": torch.tensor(domain, dtype=torch.long),
                 "seq": seq, "advantages": torch.tensor(adv, dtype=torch.float32),
                 "rewards": torch.tensor(rewards, dtype=torch.float32),
                 "group_reward": torch.tensor(group_mean, dtype=torch.float32),
                 "texts": [m.text for g in groups for m in g]}
        with torch.no_grad():  # at the sampling temperature, as the loss scores the policy (daj.train.losses.GRPO)
            batch["old_token_logps"], _ = token_logps(self.model, seq, temperature=self.temperature)
            if self.with_reference:
                ctx = self.model.disable_adapter() if hasattr(self.model, "disable_adapter") else _null()
                with ctx:
                    batch["ref_token_logps"], _ = token_logps(self.model, seq, temperature=self.temperature)
        return to_device(batch, self.device)


def _null():
    import contextlib

    return contextlib.nullcontext()

"""Training data for the judge: pair and scored-rollout files, tokenised once, batched per objective.

Units and instances per objective (an instance is what gets one weight):
  dpo, orpo  unit = one preference pair (data/pairs/*.jsonl), instance = the pair.
  kto        unit = one scored rollout (data/pairs/*_scored.jsonl), desirable when label == "correct";
             its KL partner is the response of another prompt (a seeded derangement over the file).
  grpo       offline (train.grpo_mode: offline): unit = one group of `train.grpo_group` scored rollouts to
             the same prompt (`group`), instance = a rollout; reference log-probs at the sampling
             temperature (the old policy is the current one: daj.train.losses.GRPO). Online GRPO:
             daj.train.rollouts.
Reference log-probs are computed once, under the adapter-disabled model, and carried in each batch.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from daj.errors import DajError
from daj.io import iter_jsonl
from daj.train.logprobs import TokenizedSeq, collate, token_logps
from daj.train.losses import balanced_kto_weights, grpo_advantages

PAIR_FIELDS = ("problem_id", "domain", "prompt", "chosen", "rejected")
SCORED_FIELDS = ("id", "group", "problem_id", "domain", "prompt", "response", "reward", "label")
LABELS = ("correct", "wrong", "format_error")


def _check_str(row: dict, key: str, path: str, line: int, allow_empty: bool = False) -> str:
    value = row[key]
    if not isinstance(value, str) or (not allow_empty and not value):
        raise DajError("expected a non-empty string", path=path, line=line, field=key)
    return value


def read_pairs(path: str | Path) -> list[dict]:
    """Preference pairs with string fields checked; `id` defaults to `<problem_id>#<line>`."""
    rows, seen = [], set()
    for line, row in iter_jsonl(path, required=PAIR_FIELDS):
        for key in PAIR_FIELDS:
            _check_str(row, key, str(path), line)
        row = dict(row, id=str(row.get("id") or f"{row['problem_id']}#{line}"))
        _claim_id(row["id"], seen, path, line)
        rows.append(row)
    if not rows:
        raise DajError("no preference pairs", path=str(path))
    return rows


def _claim_id(instance_id: str, seen: set[str], path: str | Path, line: int) -> None:
    """Record an instance id; a second row with the same id is an input error."""
    if instance_id in seen:
        raise DajError(f"duplicate id {instance_id!r}", path=str(path), line=line, field="id")
    seen.add(instance_id)


def read_scored(path: str | Path) -> list[dict]:
    """Scored rollouts with fields checked (reward a number, label one of LABELS)."""
    rows, seen = [], set()
    for line, row in iter_jsonl(path, required=SCORED_FIELDS):
        for key in ("domain", "prompt"):
            _check_str(row, key, str(path), line)
        _check_str(row, "response", str(path), line, allow_empty=True)
        if not isinstance(row["reward"], int | float) or isinstance(row["reward"], bool):
            raise DajError("expected a number", path=str(path), line=line, field="reward")
        if row["label"] not in LABELS:
            raise DajError(f"expected one of {', '.join(LABELS)}", path=str(path), line=line, field="label")
        row = dict(row, id=str(row["id"]), group=str(row["group"]))
        _claim_id(row["id"], seen, path, line)
        rows.append(row)
    if not rows:
        raise DajError("no scored rollouts", path=str(path))
    return rows


@dataclass
class Unit:
    """One batch element: the sequences it owns and, per instance, its index, domain and extras."""

    seqs: list[int]
    instances: list[int]
    domains: list[int]
    extra: dict[str, list[float]] = field(default_factory=dict)


class PreferenceData:
    """One split (lower or upper) of training data for one objective, tokenised."""

    def __init__(self, objective: str, tokenizer, max_length: int, rows: list[dict], domains: Sequence[str],
                 grpo_group: int = 16, seed: int = 0, temperature: float = 1.0):
        self.objective = objective
        # GRPO scores its rollouts at their sampling temperature (reference included); the rest at 1
        self.temperature = temperature if objective == "grpo" else 1.0
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.domain_index = {d: i for i, d in enumerate(domains)}
        self.instance_ids: list[str] = []
        self.instance_domains: list[str] = []
        self.seqs: list[TokenizedSeq] = []
        self.units: list[Unit] = []
        self._ref: dict[int, torch.Tensor] | None = None
        self._ref_model, self._ref_device = None, "cpu"
        self._ref_store = None
        self._tok = lambda p, r: self._add_seq(tokenizer, p, r, max_length)
        if objective in ("dpo", "orpo"):
            for row in rows:
                i = self._add_instance(row)
                self.units.append(Unit([self._tok(row["prompt"], row["chosen"]),
                                        self._tok(row["prompt"], row["rejected"])], [i],
                                       [self.domain_of(row)]))
        elif objective == "kto":
            self._build_kto(rows, seed)
        elif objective == "grpo":
            self._build_grpo(rows, grpo_group)
        else:
            raise ValueError(f"unknown objective {objective!r}")  # the params model admits only OBJECTIVES
        if not self.units:
            raise DajError(f"no usable training units for {objective}")

    def domain_of(self, row: dict) -> int:
        return self.domain_index.get(row["domain"], -1)

    def _add_seq(self, tokenizer, prompt: str, response: str, max_length: int) -> int:
        from daj.train.logprobs import tokenize_sequence

        self.seqs.append(tokenize_sequence(tokenizer, prompt, response, max_length))
        return len(self.seqs) - 1

    def _add_instance(self, row: dict) -> int:
        self.instance_ids.append(row["id"])
        self.instance_domains.append(row["domain"])
        return len(self.instance_ids) - 1

    def _build_kto(self, rows: list[dict], seed: int) -> None:
        n_des = sum(r["label"] == "correct" for r in rows)
        w_des, w_und = balanced_kto_weights(n_des, len(rows) - n_des)
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        partner = {}
        for k, i in enumerate(order):  # next in the shuffled order, skipping responses to the same prompt
            for step in range(1, len(order)):
                j = order[(k + step) % len(order)]
                if rows[j]["prompt"] != rows[i]["prompt"]:
                    break
            partner[i] = j
        for i, row in enumerate(rows):
            inst = self._add_instance(row)
            des = row["label"] == "correct"
            self.units.append(Unit([self._tok(row["prompt"], row["response"]),
                                    self._tok(row["prompt"], rows[partner[i]]["response"])], [inst],
                                   [self.domain_of(row)],
                                   {"desirable": [float(des)], "class_weight": [w_des if des else w_und]}))

    def set_kl_partners(self, tokenizer, max_length: int, rows: list[dict], partners: Sequence[int]) -> None:
        """KTO: use the response of rows[partners[i]] as the KL response of unit i (e.g. TRL's in-batch
        rotation); the reference must be (re)computed afterwards."""
        for unit, row, j in zip(self.units, rows, partners, strict=True):
            unit.seqs[1] = self._add_seq(tokenizer, row["prompt"], rows[j]["response"], max_length)
        self._ref = None

    def _build_grpo(self, rows: list[dict], group_size: int) -> None:
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            if len(groups[row["group"]]) < group_size:
                groups[row["group"]].append(row)
        for name, members in groups.items():
            if len(members) < group_size:
                raise DajError(f"group {name!r} has {len(members)} scored rollouts; offline GRPO takes groups of "
                               f"train.grpo_group = {group_size} from the file (raise pairs.responses_per_pair, "
                               "lower train.grpo_group, or use train.grpo_mode: online)", field="train.grpo_group")
            adv = grpo_advantages(torch.tensor([float(r["reward"]) for r in members], dtype=torch.float64))
            self.units.append(Unit([self._tok(r["prompt"], r["response"]) for r in members],
                                   [self._add_instance(r) for r in members],
                                   [self.domain_of(r) for r in members], {"advantages": adv.tolist()}))

    # reference log-probs -------------------------------------------------------------------------
    def compute_reference(self, model, device: str | torch.device = "cpu", lazy: bool = False,
                          store=None) -> None:
        """Per-token response log-probs under the base model (PEFT adapter disabled). Eager: every
        sequence now. Lazy: each sequence the first time a batch needs it (a short run touches few
        training units). Each sequence is computed alone (no padding, no batch): a padded batch's
        values depend, in the last float bits, on which sequences shared it, i.e. on what was already
        computed, resumed or cached. Alone, a value is the same in every run, so a run gives the same
        bytes with a cold or warm `store` (daj.train.refcache.ReferenceStore, looked up first, then
        filled), with or without one, and straight or resumed."""
        if self._ref is None or self._ref_model is not model:  # keep what this model already gave
            self._ref = {}
        self._ref_model, self._ref_device, self._ref_store = model, device, store
        if not lazy:
            self._ensure_reference(range(len(self.seqs)))

    @torch.no_grad()
    def _ensure_reference(self, idx: Sequence[int]) -> None:
        from contextlib import nullcontext

        if self._ref is None:
            raise RuntimeError("compute_reference() first")
        missing = sorted({i for i in idx if i not in self._ref})
        if self._ref_store is not None:
            for i in missing:
                hit = self._ref_store.get(self.seqs[i], self.temperature)
                if hit is not None:
                    self._ref[i] = hit
            missing = [i for i in missing if i not in self._ref]
        if not missing:
            return
        model = self._ref_model
        ctx = model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()
        with ctx:
            for i in missing:  # one sequence at a time (see compute_reference)
                batch = {key: v.to(self._ref_device) for key, v in collate([self.seqs[i]], self.pad_id).items()}
                logps, mask = token_logps(model, batch, temperature=self.temperature)
                self._ref[i] = logps[0].cpu()[mask[0].cpu()]
                if self._ref_store is not None:
                    self._ref_store.put(self.seqs[i], self._ref[i], self.temperature)

    def _ref_sum(self, idx: Sequence[int]) -> torch.Tensor:
        self._ensure_reference(idx)
        return torch.stack([self._ref[i].sum() for i in idx])

    def _ref_tokens(self, idx: Sequence[int]) -> torch.Tensor:
        """[B, L] reference log-probs aligned with token_logps() on the collated sequences."""
        self._ensure_reference(idx)
        seqs = [self.seqs[i] for i in idx]
        width = max(len(s.ids) for s in seqs)
        s_min = max(min(s.start for s in seqs), 1)
        out = torch.zeros((len(seqs), width - s_min))
        for r, (i, s) in enumerate(zip(idx, seqs, strict=True)):
            out[r, s.start - s_min: len(s.ids) - s_min] = self._ref[i]
        return out

    # batches -------------------------------------------------------------------------------------
    def batch(self, unit_idx: Sequence[int]) -> dict:
        units = [self.units[i] for i in unit_idx]
        b: dict = {
            "index": torch.tensor([i for u in units for i in u.instances], dtype=torch.long),
            "domain": torch.tensor([d for u in units for d in u.domains], dtype=torch.long),
        }
        if self.objective in ("dpo", "orpo"):
            idx = [u.seqs[0] for u in units] + [u.seqs[1] for u in units]
            b["seq"] = collate([self.seqs[i] for i in idx], self.pad_id)
            if self._ref is not None:
                b["ref_logps"] = self._ref_sum(idx)
        elif self.objective == "kto":
            main, kl = [u.seqs[0] for u in units], [u.seqs[1] for u in units]
            b["seq"] = collate([self.seqs[i] for i in main], self.pad_id)
            b["kl_seq"] = collate([self.seqs[i] for i in kl], self.pad_id)
            b["desirable"] = torch.tensor([u.extra["desirable"][0] > 0 for u in units])
            b["class_weight"] = torch.tensor([u.extra["class_weight"][0] for u in units])
            if self._ref is not None:
                b["ref_logps"], b["ref_kl_logps"] = self._ref_sum(main), self._ref_sum(kl)
        else:
            idx = [i for u in units for i in u.seqs]
            b["seq"] = collate([self.seqs[i] for i in idx], self.pad_id)
            b["advantages"] = torch.tensor([a for u in units for a in u.extra["advantages"]], dtype=torch.float32)
            if self._ref is not None:
                b["ref_token_logps"] = self._ref_tokens(idx)
        return b

    def __len__(self) -> int:
        return len(self.units)


def to_device(obj, device):
    """Move the tensors of a (nested) batch dict to `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


class BatchStream:
    """Endless, deterministic batches: the unit order is a concatenation of seeded permutations, and
    draw k takes positions [k*B, (k+1)*B). Starting at draw `start` resumes a run exactly."""

    def __init__(self, data: PreferenceData, batch_size: int, seed: int, start: int = 0, device="cpu"):
        self.data, self.batch_size, self.seed, self.start, self.device = data, batch_size, seed, start, device
        self._perms: dict[int, list[int]] = {}

    def _unit_at(self, pos: int) -> int:
        n = len(self.data)
        epoch = pos // n
        if epoch not in self._perms:
            perm = list(range(n))
            random.Random(f"{self.seed}:{epoch}").shuffle(perm)
            self._perms = {epoch: perm}
        return self._perms[epoch][pos % n]

    def units_for_draw(self, k: int) -> list[int]:
        return [self._unit_at(k * self.batch_size + j) for j in range(self.batch_size)]

    def __iter__(self) -> Iterator[dict]:
        k = self.start
        while True:
            yield to_device(self.data.batch(self.units_for_draw(k)), self.device)
            k += 1


def domains_of(rows: list[dict]) -> list[str]:
    """Sorted distinct domains of the training rows (the weight model's domain vocabulary)."""
    return sorted({r["domain"] for r in rows})

"""Tokenise (prompt, response) sequences and compute response-token log-probabilities.

A sequence is `prompt + response + eos`, tokenised as one string. The response starts where the
tokenisation of the prompt alone and of the whole sequence diverge (tokens may merge across the
boundary), so only tokens that belong to the response (and the eos) are scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenizedSeq:
    """Token ids of prompt + response + eos; `start` is the index of the first response token."""

    ids: tuple[int, ...]
    start: int

    @property
    def n_response(self) -> int:
        return len(self.ids) - self.start


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tokenize_sequence(tokenizer, prompt: str, response: str, max_length: int) -> TokenizedSeq:
    """Tokenise one sequence; when it is longer than max_length, drop prompt tokens from the left first
    (the response is what is scored), then response tokens from the right. At least one prompt token stays."""
    eos = tokenizer.eos_token or ""
    if eos and not response.endswith(eos):
        response = response + eos
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(prompt + response, add_special_tokens=False)["input_ids"]
    start = _common_prefix(prompt_ids, full_ids)
    if start == 0:  # the first token of the sequence is never scored; keep one token of context
        start = 1
    if len(full_ids) > max_length:
        overflow = len(full_ids) - max_length
        drop = min(overflow, start - 1)
        full_ids, start = full_ids[drop:], start - drop
        full_ids = full_ids[:max_length]
    return TokenizedSeq(tuple(full_ids), start)


def collate(seqs: Sequence[TokenizedSeq], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad sequences into input_ids, attention_mask and response_mask (1 on scored tokens)."""
    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    resp = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s.ids)] = torch.tensor(s.ids, dtype=torch.long)
        attn[i, : len(s.ids)] = 1
        resp[i, s.start: len(s.ids)] = True
    return {"input_ids": ids, "attention_mask": attn, "response_mask": resp}


def token_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the response tokens: (logps [B, L], mask [B, L]), float32, zero off-mask.

    Only the logits from the first response position on are materialised (`logits_to_keep`), which
    matters at paper scale where prompts are long and the vocabulary has 150k entries.
    """
    input_ids, attn, resp = batch["input_ids"], batch["attention_mask"], batch["response_mask"]
    width = input_ids.shape[1]
    starts = resp.float().argmax(dim=1)
    s_min = max(int(starts.min()), 1)
    keep = width - s_min + 1
    out = model(input_ids=input_ids, attention_mask=attn, logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, :-1].float()  # positions s_min-1 .. width-2 predict tokens s_min .. width-1
    targets = input_ids[:, s_min:]
    mask = resp[:, s_min:]
    logps = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return logps * mask, mask


def sequence_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-prob per sequence and the number of response tokens: ([B], [B])."""
    logps, mask = token_logps(model, batch)
    return logps.sum(dim=1), mask.sum(dim=1).to(logps.dtype)

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


LOGITS_TOKENS = 4096  # (sequence x position) logits rows computed at once: bounds the logits' memory


def _body_and_head(model):
    """(transformer body, output projection) of a causal LM (PEFT-wrapped or not), or (None, None)
    when the architecture post-processes its logits (soft-capping, scaling) and must run whole."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None, None
    try:
        body, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None, None
    if body is None or head is None or body is base:
        return None, None
    return body, head


def _selective_log_softmax():
    """TRL's log_softmax -> gather (trl.trainer.utils.selective_log_softmax): the numeric TRL's trainers
    use (a fused kernel on CUDA, a per-row logsumexp elsewhere), imported when first needed (~2 s)."""
    from trl.trainer.utils import selective_log_softmax

    return selective_log_softmax


def _chunk_logps(head, hidden: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(head(hidden) / temperature)[targets] for one chunk of positions (float32)."""
    return _selective_log_softmax()(head(hidden).float(), targets, temperature=temperature)


def token_logps(model, batch: dict[str, torch.Tensor], max_tokens: int | None = None,
                temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the response tokens: (logps [B, L], mask [B, L]), float32, zero off-mask.

    `temperature` divides the logits first (the sampling distribution at that temperature, as TRL's
    GRPO scores its rollouts); 1 gives the model's own distribution (DPO, KTO, ORPO).
    Only positions from the first response token on are projected to the vocabulary, and in chunks
    of about `max_tokens` (sequence x position) rows: the float32 logits of the whole micro-batch
    never exist at once. Under autograd each chunk is checkpointed (its logits are recomputed in the
    backward pass), so the backward pass holds one chunk's logits at a time too. `max_tokens` defaults
    to the module's LOGITS_TOKENS, read at call time (benchmarks set it huge for the one-chunk path).
    """
    max_tokens = max_tokens or LOGITS_TOKENS
    input_ids, attn, resp = batch["input_ids"], batch["attention_mask"], batch["response_mask"]
    n, width = input_ids.shape
    starts = resp.float().argmax(dim=1)
    s_min = max(int(starts.min()), 1)
    targets = input_ids[:, s_min:]
    mask = resp[:, s_min:]
    body, head = _body_and_head(model)
    if body is None:  # whole-model path: the logits of the scored positions at once
        out = model(input_ids=input_ids, attention_mask=attn, logits_to_keep=width - s_min + 1, use_cache=False)
        logps = _selective_log_softmax()(out.logits[:, :-1].float(), targets, temperature=temperature)
        return logps * mask, mask
    hidden = body(input_ids=input_ids, attention_mask=attn, use_cache=False).last_hidden_state
    hidden = hidden[:, s_min - 1: width - 1]  # positions s_min-1 .. width-2 predict tokens s_min .. width-1
    step = max(1, max_tokens // n)
    chunks = []
    for c in range(0, hidden.shape[1], step):
        h, t = hidden[:, c: c + step], targets[:, c: c + step]
        if hidden.shape[1] > step and torch.is_grad_enabled() and h.requires_grad:
            from torch.utils.checkpoint import checkpoint

            chunks.append(checkpoint(_chunk_logps, head, h, t, temperature, use_reentrant=False))
        else:
            chunks.append(_chunk_logps(head, h, t, temperature))
    logps = torch.cat(chunks, dim=1)
    return logps * mask, mask


def sequence_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-prob per sequence and the number of response tokens: ([B], [B])."""
    logps, mask = token_logps(model, batch)
    return logps.sum(dim=1), mask.sum(dim=1).to(logps.dtype)

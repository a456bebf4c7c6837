"""The repetition penalty of transformers' RepetitionPenaltyLogitsProcessor, at a per-step cost that does
not grow with the vocabulary.

Semantics (CTRL, as in transformers): every token id present in the sequence so far (prompt plus
generated tokens) has its logit divided by the penalty when positive and multiplied by it when
negative, once per step whatever the number of occurrences. Ids at or above the scores' width are
ignored. Since transformers 5.2x `generate` also ignores each row's left padding (positions before
the row's first attention-mask 1); older versions penalise the pad id there too. `ignore_padding`
selects the behaviour; `hf_ignores_left_padding()` tells which one the installed transformers has.

transformers rebuilds the penalty every step from the whole sequence: a padded copy of the (batch,
vocabulary) scores, a gather and a scatter over (batch, sequence length), and another full copy. Here
the distinct ids seen so far are kept per row (a boolean "seen" mask for de-duplication, plus a
compact index of the seen ids); each step adds the one new token and rewrites only the seen logits,
in place. The arithmetic per logit is the same (`x * p` if `x < 0` else `x / p`), so the processed
scores are bit-identical and sampling under the same seed picks the same tokens.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=1)
def hf_ignores_left_padding() -> bool:
    """Whether the installed transformers' `generate` leaves left padding out of the penalty.

    Those versions (5.2x) accept a per-row tensor `prompt_ignore_length` and `generate` passes the
    padding lengths as one; older ones take only an int, are given none, and penalise pad ids in the
    left padding.
    """
    import inspect

    from transformers import RepetitionPenaltyLogitsProcessor
    from transformers.generation.utils import GenerationMixin

    try:
        RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=torch.zeros(1, dtype=torch.long))
    except (ValueError, TypeError):
        return False
    try:
        return "prompt_ignore_length" in inspect.getsource(GenerationMixin._get_logits_processor)
    except (OSError, TypeError):  # no source shipped: the processor's signature is the best sign left
        return True


class FastRepetitionPenalty:
    """A transformers logits processor (callable `(input_ids, scores) -> scores`) with an incremental state.

    `pad_lengths` (one per row of the expanded batch, i.e. after `num_return_sequences`) are the
    numbers of leading positions to leave out; None leaves nothing out. One instance serves one
    `generate` call: the first call builds the state from the whole prompt, later calls add the last
    token. A call whose sequence is not exactly one token longer than the previous one rebuilds it.
    Scores are modified in place and returned (transformers hands the processors a private float32
    copy of the logits; don't ask `generate` for `output_logits` with this processor).
    """

    def __init__(self, penalty: float, pad_lengths: torch.Tensor | None = None):
        if not penalty > 0:
            raise ValueError(f"penalty must be > 0, got {penalty}")
        self.penalty = float(penalty)
        self.pad_lengths = pad_lengths
        self._seen: torch.Tensor | None = None   # (B, V + 1) bool; column V absorbs ignored positions
        self._ids: torch.Tensor | None = None    # (B, K) seen ids; filler entries repeat a row's first id
        self._valid: torch.Tensor | None = None  # (B, K) False only for rows that have seen nothing yet
        self._length = -1

    def _build(self, input_ids: torch.Tensor, vocab: int) -> None:
        ids = input_ids.clamp(max=vocab)
        if self.pad_lengths is not None:
            if self.pad_lengths.shape[0] != ids.shape[0]:
                raise ValueError(f"{self.pad_lengths.shape[0]} pad lengths for a batch of {ids.shape[0]}")
            lengths = self.pad_lengths.to(ids.device)
            positions = torch.arange(ids.shape[1], device=ids.device)
            ids = ids.masked_fill(positions[None, :] < lengths[:, None], vocab)
        batch = ids.shape[0]
        seen = torch.zeros(batch, vocab + 1, dtype=torch.bool, device=ids.device)
        seen.scatter_(1, ids, True)
        seen[:, vocab] = False
        rows, cols = seen.nonzero(as_tuple=True)  # row-major, so each row's ids are contiguous
        counts = seen.sum(dim=1)
        width = max(int(counts.max()), 1)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(rows.shape[0], device=ids.device) - starts[rows]
        compact = torch.zeros(batch, width, dtype=torch.long, device=ids.device)
        compact[rows, slot] = cols
        has_any = counts > 0
        filler = torch.arange(width, device=ids.device)[None, :] >= counts[:, None]
        # a filler repeats the row's first id: scattering the same penalised value twice is harmless
        self._ids = torch.where(filler, compact[:, :1], compact)
        self._valid = has_any[:, None].expand(batch, width).clone()
        self._seen = seen

    def _add(self, token: torch.Tensor, vocab: int) -> None:
        token = token.clamp(max=vocab)
        rows = torch.arange(token.shape[0], device=token.device)
        new = ~self._seen[rows, token] & (token < vocab)
        self._seen[rows, token] = True
        first_valid = self._valid[:, 0]
        # a row that sees its first id only now (its whole prompt was left out): its fillers take that id
        first = new & ~first_valid
        ids = torch.where(first[:, None], token[:, None], self._ids)
        valid = self._valid | first[:, None]
        self._ids = torch.cat([ids, torch.where(new, token, ids[:, 0])[:, None]], dim=1)
        self._valid = torch.cat([valid, valid[:, :1]], dim=1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        length = input_ids.shape[1]
        if self._seen is None or length != self._length + 1 or self._seen.shape != (input_ids.shape[0], vocab + 1):
            self._build(input_ids, vocab)
        else:
            self._add(input_ids[:, -1], vocab)
        self._length = length
        picked = scores.gather(1, self._ids)
        penalised = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        scores.scatter_(1, self._ids, torch.where(self._valid, penalised, picked))
        return scores

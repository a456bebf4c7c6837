"""Position-robust selection (bon.swap): judge a pair in both orders and combine the two answers.

A small judge often prefers a position whatever the programs. Showing candidates A and B as (A, B)
("forward") and as (B, A) ("backward") and combining the answers cancels a constant preference:

- **Log-probability sum** (both answers carry option log-probabilities: judge.mode select, or
  forced selections in mode reason): the score of "A is correct" is log p(1 | A, B) + log p(2 | B, A),
  that of B is log p(2 | A, B) + log p(1 | B, A) (each order's options renormalised). A constant
  position bias adds the same amount to both scores, so it cancels exactly. The choice is the higher
  score, or with judge.force_sampling a draw from softmax(scores / judge.temperature).
- **Votes** otherwise (a judge that writes its own tags): each order's valid selection is a vote for
  the candidate it names; more votes win; one vote each (the orders disagree) is a tie; no vote
  gives no selection (a format error).
- Ties and draws use a seed of the unordered pair (both prompts' digests, sorted), the seed and the
  response index (not the engine, as in JudgeRunner's forced draws), and the computation runs in a
  canonical orientation, so the combined choice is the same whichever order the caller calls forward.

`swap_consistent` / `swap_consistency` give the share of pairs whose two orders pick the same
program (the pairwise metrics of daj.eval use them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from daj.engines.base import Chat
from daj.hashing import json_digest, stable_seed
from daj.judge.runner import CallStats, JudgeRequest, JudgeResponse, JudgeRunner


@dataclass(frozen=True)
class SwapRequest:
    """A pair shown both ways: `forward` shows candidate A at position 1, `backward` shows B there."""

    forward: Chat
    backward: Chat
    n: int = 1
    seed: int = 0


@dataclass
class SwapChoice:
    """The combined answer for one response index: `selection` 1 = A, 2 = B (forward numbering)."""

    selection: int | None
    forward: JudgeResponse
    backward: JudgeResponse
    method: str                               # "logprob" or "vote"
    scores: tuple[float, float] | None        # combined log-probabilities of A and B ("logprob")
    consistent: bool                          # both orders chose the same program
    tie: bool                                 # decided by the pair's seeded coin


def in_forward_numbering(backward_selection: int | None) -> int | None:
    """A backward-order selection as forward numbering (position 1 there is B = 2)."""
    return None if backward_selection is None else 3 - backward_selection


def swap_consistent(forward_selection: int | None, backward_selection: int | None) -> bool:
    """True when the two orders select the same program (a format error is never consistent)."""
    return forward_selection is not None and forward_selection == in_forward_numbering(backward_selection)


def swap_consistency(pairs: Iterable[tuple[int | None, int | None]]) -> float | None:
    """Share of (forward selection, backward selection) pairs that pick the same program."""
    flags = [swap_consistent(f, b) for f, b in pairs]
    return sum(flags) / len(flags) if flags else None


def combine(forward: JudgeResponse, backward: JudgeResponse, salt: str, temperature: float,
            sample: bool) -> SwapChoice:
    """The combined choice of one forward and one backward response (see the module docstring)."""
    consistent = swap_consistent(forward.selection, backward.selection)
    rng = np.random.default_rng(stable_seed("swap", salt))
    coin = int(rng.integers(2)) + 1
    if forward.option_logprobs is not None and backward.option_logprobs is not None:
        f, b = forward.option_logprobs, backward.option_logprobs
        scores = (f[0] + b[1], f[1] + b[0])
        if sample and temperature > 0:
            z = np.asarray(scores) / temperature
            p = np.exp(z - z.max())
            pick = 1 + int(rng.choice(2, p=p / p.sum()))
            return SwapChoice(pick, forward, backward, "logprob", scores, consistent, False)
        if scores[0] == scores[1]:
            return SwapChoice(coin, forward, backward, "logprob", scores, consistent, True)
        return SwapChoice(1 if scores[0] > scores[1] else 2, forward, backward, "logprob", scores, consistent, False)
    votes = [forward.selection, in_forward_numbering(backward.selection)]
    a, b = votes.count(1), votes.count(2)
    if a == b:
        return SwapChoice(coin if a else None, forward, backward, "vote", None, consistent, bool(a))
    return SwapChoice(1 if a > b else 2, forward, backward, "vote", None, consistent, False)


def respond_swapped(runner: JudgeRunner, requests: list[SwapRequest],
                    desc: str | None = None) -> tuple[list[list[SwapChoice]], CallStats]:
    """`n` combined choices per pair: both orders are asked `n` times (one runner call, cached and
    deduplicated as usual), and the k-th answers of the two orders are combined."""
    canonical = [json_digest(r.forward) <= json_digest(r.backward) for r in requests]
    asks = []
    for r, keep in zip(requests, canonical, strict=True):
        first, second = (r.forward, r.backward) if keep else (r.backward, r.forward)
        asks += [JudgeRequest(first, 2, n=r.n, seed=r.seed), JudgeRequest(second, 2, n=r.n, seed=r.seed)]
    answers, stats = runner.respond(asks, desc=desc, need_logprobs=True)
    s = runner.settings
    out = []
    for i, (r, keep) in enumerate(zip(requests, canonical, strict=True)):
        first, second = answers[2 * i], answers[2 * i + 1]
        # the pair's content and seed, not the engine: see JudgeRunner._draw_key
        pair_salt = json_digest(sorted([json_digest(r.forward), json_digest(r.backward)]) + [r.seed])
        choices = []
        for k in range(r.n):
            c = combine(first[k], second[k], f"{pair_salt}#{k}", s.temperature, s.force_sampling)
            if not keep:  # computed for (B, A): back to the caller's numbering
                c = SwapChoice(in_forward_numbering(c.selection), second[k], first[k], c.method,
                               None if c.scores is None else (c.scores[1], c.scores[0]), c.consistent, c.tie)
            choices.append(c)
        out.append(choices)
    return out, stats

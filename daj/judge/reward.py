"""The verifiable reward of one judge response on a (pass, fail) candidate pair."""

from __future__ import annotations

from daj.config import RewardConfig

LABELS = tuple(RewardConfig.model_fields)  # correct, wrong, format_error


def label_of(selection: int | None, correct_position: int) -> str:
    """'correct', 'wrong' or 'format_error'. Only defined when exactly one of the two shown passes."""
    if correct_position not in (1, 2):
        raise ValueError("the reward needs a pair with exactly one passing program (position 1 or 2)")
    if selection is None:
        return "format_error"
    return "correct" if selection == correct_position else "wrong"


def reward_of(selection: int | None, correct_position: int, levels: RewardConfig) -> tuple[float, str]:
    """(reward, label) of a parsed selection when the passing program sits at `correct_position`."""
    label = label_of(selection, correct_position)
    return getattr(levels, label), label

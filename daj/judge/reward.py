"""The verifiable reward of one judge response on a (pass, fail) candidate pair."""

from __future__ import annotations

from dataclasses import dataclass

from daj.errors import DajError

LABELS = ("correct", "wrong", "format_error")


@dataclass(frozen=True)
class RewardLevels:
    """Reward of a correct selection, a wrong one, and a format error (params judge.reward.*)."""

    correct: float = 1.0
    wrong: float = 0.0
    format_error: float = -1.0

    @classmethod
    def from_params(cls, params) -> RewardLevels:
        levels = {}
        for key in LABELS:
            value = params.get_path(f"judge.reward.{key}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DajError(f"expected a number, got {value!r}", path=params.path, field=f"judge.reward.{key}")
            levels[key] = float(value)
        return cls(**levels)


def label_of(selection: int | None, correct_position: int) -> str:
    """'correct', 'wrong' or 'format_error'. Only defined when exactly one of the two shown passes."""
    if correct_position not in (1, 2):
        raise ValueError("the reward needs a pair with exactly one passing program (position 1 or 2)")
    if selection is None:
        return "format_error"
    return "correct" if selection == correct_position else "wrong"


def reward_of(selection: int | None, correct_position: int, levels: RewardLevels) -> tuple[float, str]:
    """(reward, label) of a parsed selection when the passing program sits at `correct_position`."""
    label = label_of(selection, correct_position)
    return getattr(levels, label), label

"""Checks before any work: what a stage needs from outside the machine or from a plugin is there.

Today: the engine options of every generative policy are valid for its backend (a typo in a policy's
`base_url` or `batch_size` stops the first stage, not `sample` an hour later).
"""

from __future__ import annotations

from daj.config import ParamsConfig
from daj.errors import DajError


def check_engine_options(config: ParamsConfig, where: str) -> None:
    """Every generative policy's engine options against its backend's constructor."""
    generative = [(i, p) for i, p in enumerate(config.policies) if p.backend not in ("file", "mutants")]
    if not generative:
        return
    from daj.engines.registry import engine_options

    for i, policy in generative:
        try:
            engine_options(policy.engine_spec())
        except DajError as e:
            raise e.at(path=where, under=f"policies[{i}]") from None

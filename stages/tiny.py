"""tiny: build models/tiny, the tiny random judge/policy model, from the benchmark text.

A random-initialised Qwen3-architecture model with a BPE tokenizer trained on the HumanEval
prompts and solutions (daj.models.tiny); deterministic given `seed`. Written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

from daj import artifacts
from daj.config import ParamsConfig
from daj.io import atomic_dir

OUT = artifacts.TINY_MODEL


def build(out: str | Path, seed: int) -> Path:
    """Build the tiny model into `out` (replaced whole, or left untouched on failure)."""
    from daj.models.tiny import build_tiny_model, humaneval_corpus

    with atomic_dir(out) as tmp:
        build_tiny_model(tmp, humaneval_corpus(), seed=seed)
    return Path(out)


def main(config: ParamsConfig) -> None:
    seed = config.seed
    out = build(OUT, seed)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    logging.getLogger().info("wrote %s (seed %d, %.1f MB)", out, seed, size / 1e6)


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("tiny", main)

"""The tiny random model for engine tests, built once per test process (about 5 s)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=1)
def tiny_model_dir() -> str:
    """Path of a tiny model built from the HumanEval corpus with seed 0."""
    from daj.models.tiny import build_tiny_model, humaneval_corpus

    out = Path(tempfile.mkdtemp(prefix="daj-tiny-")) / "tiny"
    build_tiny_model(out, humaneval_corpus(), seed=0)
    return str(out)


@functools.lru_cache(maxsize=1)
def tiny_engine():
    """One shared hf engine on the tiny model (tests must not mutate it)."""
    import torch

    from daj.engines.hf import HFEngine

    torch.set_num_threads(1)
    return HFEngine(tiny_model_dir(), device="cpu", batch_size=2)

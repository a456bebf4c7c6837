"""Where the pipeline's artifacts live: the paths of dvc.yaml's deps and outs, in one place.

Stages and tools read and write these paths relative to the project root (the current directory of
`dvc repro`); dvc.yaml names the same paths.
"""

from __future__ import annotations

from pathlib import Path

from daj.errors import DajError

PROBLEMS = "data/problems.jsonl"        # fetch
CANDIDATES = "data/candidates"          # sample: <policy>.jsonl
VERDICTS = "data/verdicts"              # execute: <policy>.jsonl
SPLITS = "data/splits"                  # split: lower / upper / test .jsonl
PAIRS = "data/pairs"                    # pairs: lower / upper [_scored] .jsonl
TINY_MODEL = "models/tiny"              # tiny
JUDGE_ADAPTER = "models/judge"          # train: the trained LoRA adapter and its tokenizer
CHECKPOINT = "models/ckpt"              # train: resumable checkpoint
METRICS = "metrics"                     # <stage>.json and plot data
SAMPLE_METRICS = "metrics/sample"       # sample: <policy>.json
TRAIN_CURVES = "metrics/train"          # train: curves/ and PNGs


def metrics(stage: str) -> str:
    """metrics/<stage>.json."""
    return f"{METRICS}/{stage}.json"


def trained_adapter(adapter: str | None) -> str | None:
    """The judge's adapter: models/judge when the train stage has written it, else `adapter`
    (judge.adapter); a models/judge that is not a PEFT adapter is an error."""
    trained = Path(JUDGE_ADAPTER)
    if trained.is_dir():
        if not (trained / "adapter_config.json").is_file():
            raise DajError("not a PEFT adapter (no adapter_config.json)", path=str(trained))
        return str(trained)
    return adapter

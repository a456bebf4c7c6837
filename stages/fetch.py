"""fetch: write data/problems.jsonl for `benchmark` from `data.source` (see daj.data.sources)."""

from __future__ import annotations

import logging
from collections import Counter

from daj import artifacts
from daj.config import ParamsConfig
from daj.data.sources import load_problems
from daj.io import write_jsonl

OUT = artifacts.PROBLEMS


def main(config: ParamsConfig) -> None:
    problems = load_problems(config.benchmark, config.data)
    n = write_jsonl(OUT, problems)
    platforms = Counter(p["platform"] for p in problems)
    logging.getLogger().info("wrote %d problems to %s (%s)", n, OUT,
                             ", ".join(f"{k} {v}" for k, v in sorted(platforms.items())))


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("fetch", main)

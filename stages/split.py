"""split: data/problems.jsonl (+ data/verdicts/*.jsonl) -> data/splits/{lower,upper,test}.jsonl and
metrics/split.json (rules in daj.data.splits)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from daj import artifacts
from daj.config import ParamsConfig
from daj.data.sources import check_problem
from daj.data.splits import read_verdicts, split_problems
from daj.io import atomic_dir, iter_jsonl, write_json, write_jsonl

PROBLEMS, VERDICTS, SPLITS_DIR = artifacts.PROBLEMS, artifacts.VERDICTS, artifacts.SPLITS
METRICS = artifacts.metrics("split")


def main(config: ParamsConfig) -> None:
    problems = []
    for line, row in iter_jsonl(PROBLEMS, required=("id",)):
        check_problem(row, path=PROBLEMS, line=line)
        problems.append(row)
    verdicts, files = read_verdicts(VERDICTS)
    splits, metrics = split_problems(problems, config.split, verdicts, source=PROBLEMS)
    metrics["verdict_files"] = [Path(f).name for f in files]
    with atomic_dir(SPLITS_DIR) as tmp:
        for name, rows in splits.items():
            write_jsonl(tmp / f"{name}.jsonl", rows)
    write_json(METRICS, metrics)
    summary = {k: metrics[k] for k in ("lower", "upper", "test")}
    logging.getLogger().info("splits %s; rule %s", json.dumps(summary),
                             metrics.get("bcb_upper_rule", metrics.get("rule")))


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("split", main)

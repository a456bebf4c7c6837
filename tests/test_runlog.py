"""Run fields (model calls, cache hits, seconds) are split from results at any depth; the log merges."""

from __future__ import annotations

import json

from daj.runlog import record, split_run_fields


def test_split_run_fields_keeps_results_and_nesting():
    metrics = {"lower": {"pairs": 3, "judge_cost": {"responses": 6, "model_calls": 2, "cache_hits": 1},
                         "by": [{"seconds": 1.5, "n": 1}, {"n": 2}]}, "seconds": 9.0}
    results, run = split_run_fields(metrics)
    assert results == {"lower": {"pairs": 3, "judge_cost": {"responses": 6}, "by": [{"n": 1}, {"n": 2}]}}
    assert run == {"lower": {"judge_cost": {"model_calls": 2, "cache_hits": 1}, "by": [{"seconds": 1.5}, {}]},
                   "seconds": 9.0}


def test_record_merges_into_one_file_per_stage(tmp_path):
    record("bon", {"a": 1}, tmp_path)
    path = record("bon", {"b": 2}, tmp_path)
    assert json.loads(path.read_text()) == {"a": 1, "b": 2} and path.name == "bon.json"

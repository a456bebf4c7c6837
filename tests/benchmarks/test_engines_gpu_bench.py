"""benchmarks/gpu_engines.py --cpu-smoke: the device script runs end to end on a tiny config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_engines_cpu_smoke(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_engines.py"), "--cpu-smoke", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_engines_cpu_smoke.json").read_text())
    decode = report["decode"]
    assert set(decode) == {"old", "new", "new_hf_penalty", "no_penalty", "old_greedy", "greedy"}
    for variant in ("old", "new", "new_hf_penalty", "no_penalty"):
        for row in decode[variant].values():
            assert row["tokens_per_s"] > 0 and row["steps"] == report["new_tokens"], (variant, row)
    assert set(decode["new"]) == {"1", "4", "8"}  # the larger batches run on the new path only
    # the same loop with either penalty implementation: the same ids (sampled, same streams)
    assert {k: r["ids_digest"] for k, r in decode["new_hf_penalty"].items()} == {
        k: decode["new"][k]["ids_digest"] for k in decode["new_hf_penalty"]}
    for row in report["penalty"].values():
        assert row["hf_ms"] > 0 and row["fast_ms"] > 0 and "share_of_old_step" in row
    scoring = report["scoring"]
    assert scoring["one_by_one_ms_per_prompt"] > 0 and scoring["batch4_max_abs_diff"] <= 1e-5
    assert report["summary"]["skipped"] == []
    # greedy decoding: the engine's loop gives transformers' own tokens
    assert report["summary"]["greedy_same_tokens"] == {"4": True}

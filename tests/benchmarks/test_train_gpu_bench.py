"""The training device script runs end to end on CPU (--cpu-smoke) and writes its one JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_train_benchmark_cpu_smoke(tmp_path):
    out = tmp_path / "gpu_train.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", OUT=str(tmp_path / "device_out"))
    (tmp_path / "device_out").mkdir()
    proc = subprocess.run([sys.executable, "benchmarks/gpu_train.py", "--cpu-smoke", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads((tmp_path / "device_out" / "gpu_train.json").read_text()) == report
    for part in ("plain", "bilevel", "fit"):
        assert "error" not in report[part], report[part]
    plain = report["plain"]
    assert set(plain) >= {"old_mb1", "new_mb1", "new_mb4"}
    assert all(plain[k]["pairs_per_s"] > 0 for k in ("old_mb1", "new_mb1", "new_mb4"))
    assert plain["new_mb4"]["micro_batch"] * plain["new_mb4"]["accum"] == plain["old_mb1"]["accum"]
    for label in ("old", "new"):
        assert report["bilevel"][label]["overhead"] > 0  # a timing: its size is the benchmark's business
    assert report["fit"]["new"]["fits"] and report["fit"]["new"]["sequences"] == 16
    assert set(report["verdict"]) == {"plain_speedup", "bilevel_overhead_new", "fits_16x1.3k_new", "fits_16x1.3k_old"}

"""Ctrl-C (SIGINT to the process group) halfway through `execute`: it stops within seconds, writes
nothing, caches only complete verdicts, and the next run's verdicts equal a clean run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daj.io import read_jsonl, write_jsonl
from daj.store import Store

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = {"id": "lcb/sum", "benchmark": "lcb", "title": "sum", "prompt": "", "starter_code": "",
           "platform": "atcoder", "difficulty": "easy", "release_date": None,
           "tests": {"type": "stdin", "public": [{"input": "1 2\n", "output": "3"}],
                     "private": [{"input": "5 5\n", "output": "10"}]}}
RIGHT = "a, b = map(int, input().split())\nprint(a + b)"
CODES = [
    "import time\ntime.sleep(0.4)\n" + RIGHT,                 # slow but right
    "import time\ntime.sleep(0.4)\nprint(0)",                 # slow and wrong
    "while True:\n    pass",                                  # a timeout (CPU limit)
    "import time\ntime.sleep(30)",                            # a timeout (wall-clock backstop)
] * 2
PARAMS = """
policies:
  - name: p
    backend: file
    path: p.jsonl
pairs:
  lower_policies: [p]
  upper_policies: [p]
bon:
  policies: [p]
execute:
  backend: local
  allow_unsandboxed: false
  verdict_source: sandbox
  timeout_s: 1
  wall_factor: 2
  memory_mb: 512
  workers: 1
caches:
  verdicts: {cache}
"""


def setup(workdir: Path, cache: str) -> None:
    (workdir / "data" / "candidates").mkdir(parents=True, exist_ok=True)
    write_jsonl(workdir / "data" / "problems.jsonl", [PROBLEM])
    write_jsonl(workdir / "data" / "candidates" / "p.jsonl",
                [{"problem_id": PROBLEM["id"], "policy": "p", "index": i, "code": c} for i, c in enumerate(CODES)])
    (workdir / "params.yaml").write_text(PARAMS.format(cache=cache))


def start(workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "stages.execute"], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def verdicts(workdir: Path) -> list[dict]:
    return read_jsonl(workdir / "data" / "verdicts" / "p.jsonl")


def cached(workdir: Path) -> list[dict]:
    if not (workdir / ".cache" / "verdicts" / "verdicts.sqlite").exists():
        return []
    return Store(workdir / ".cache" / "verdicts", "verdicts").json_values()


@pytest.mark.slow
def test_ctrl_c_stops_promptly_and_leaves_no_wrong_verdict(tmp_path):
    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"
    setup(interrupted, ".cache/verdicts")
    setup(clean, ".cache/verdicts")

    proc = start(interrupted)
    deadline = time.monotonic() + 120
    while not cached(interrupted) and time.monotonic() < deadline:  # wait until it is halfway
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    proc.wait(timeout=30)
    stopped_after = time.monotonic() - sent
    output = proc.stdout.read().decode()
    assert proc.returncode == 130, output
    assert stopped_after < 5, stopped_after
    assert not (interrupted / "data" / "verdicts").exists() and not (interrupted / "metrics").exists()
    partial = cached(interrupted)
    assert 0 < len(partial) < len(CODES)
    with pytest.raises(ProcessLookupError):  # nothing of the stage is left running
        time.sleep(0.5)
        os.killpg(proc.pid, 0)

    for workdir in (interrupted, clean):
        proc = start(workdir)
        assert proc.wait(timeout=300) == 0, proc.stdout.read().decode()
    assert verdicts(interrupted) == verdicts(clean)
    assert [v["status"] for v in verdicts(clean)] == ["pass", "wrong_answer", "timeout", "timeout"] * 2
    # every verdict cached by the interrupted run is one a clean run gives
    clean_cache = {json.dumps(c, sort_keys=True) for c in cached(clean)}
    for c in partial:
        assert json.dumps(c, sort_keys=True) in clean_cache

"""Recovery as the README documents it: after a failed stage, one command line brings back every output
of the last committed run (cached outputs, git-tracked metrics and plot data alike), and `dvc status`
is clean again. The project is a small stand-in with the output kinds of dvc.yaml (a cached output, a
metrics file and a curves folder with `cache: false`), so the test runs in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from daj.paths import REPO

RECOVER = "git checkout HEAD -- params.yaml dvc.lock metrics && dvc checkout"

MAKE = """import yaml
x = yaml.safe_load(open("params.yaml"))["x"]
open("out.txt", "w").write(str(x) * 3)
"""
REPORT = """import json, os, sys, yaml
y = yaml.safe_load(open("params.yaml"))["y"]
if y < 0:
    sys.exit("y must be >= 0")
os.makedirs("metrics/curves", exist_ok=True)
json.dump({"y": y, "n": len(open("out.txt").read())}, open("metrics/m.json", "w"))
open("metrics/curves/c.csv", "w").write(f"step,v\\n0,{y}\\n")
"""
DVC_YAML = """stages:
  make:
    cmd: python make.py
    deps: [make.py]
    params: [x]
    outs: [out.txt]
  report:
    cmd: python report.py
    deps: [report.py, out.txt]
    params: [y]
    outs:
      - metrics/curves:
          cache: false
    metrics:
      - metrics/m.json:
          cache: false
"""


def _sh(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not {".git", ".dvc"} & set(p.relative_to(root).parts)}


def test_the_documented_line_recovers_a_failed_run(tmp_path):
    assert RECOVER in (REPO / "README.md").read_text(encoding="utf-8")  # the line users are told to run
    (tmp_path / "params.yaml").write_text("x: 1\ny: 2\n")
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "make.py").write_text(MAKE)
    (tmp_path / "report.py").write_text(REPORT)
    setup = "git init -q && dvc init -q && dvc repro -q && git add -A && git commit -qm good"
    assert _sh(setup, tmp_path).returncode == 0
    good = _snapshot(tmp_path)
    assert json.loads(good["metrics/m.json"]) == {"y": 2, "n": 3} and "out.txt" in good

    # a new experiment: `make` succeeds with a new output, `report` fails and DVC has removed its outputs
    (tmp_path / "params.yaml").write_text("x: 22\ny: -1\n")
    failed = _sh("dvc repro", tmp_path)
    assert failed.returncode != 0
    assert not (tmp_path / "metrics/m.json").exists() and not (tmp_path / "metrics/curves").exists()
    assert (tmp_path / "out.txt").read_text() == "222222"

    assert _sh(RECOVER, tmp_path).returncode == 0
    assert _snapshot(tmp_path) == good
    status = _sh("dvc status --json", tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout

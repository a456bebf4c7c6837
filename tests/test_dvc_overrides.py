"""Params as DVC writes them: `dvc exp run -S train.lr=1e-6` (DVC writes `lr: 1e-06`, a string to a
YAML 1.1 reader) reaches a stage as the number 1e-06, and the README's paper-preset command passes the
typed params and stops, offline, at the hub with one line naming data.source."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from daj.params import load_config
from daj.paths import REPO

STAGE = """stages:
  fetch:
    cmd: python -m stages.fetch
    params: [train.lr, data]
    outs: [data/problems.jsonl]
"""


def _run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "HF_HUB_OFFLINE": "", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture()
def project(tmp_path) -> Path:
    """A git + DVC project with the repo's params.yaml (3 problems) and its fetch stage."""
    text = (REPO / "params.yaml").read_text(encoding="utf-8").replace("  limit: null", "  limit: 3")
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "dvc.yaml").write_text(STAGE, encoding="utf-8")
    for args in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"], ["git", "add", "-A"],
                 ["git", "commit", "-qm", "init"]):
        assert _run(args, tmp_path).returncode == 0
    return tmp_path


@pytest.mark.parametrize(("value", "expected"), [("1e-6", 1e-6), ("0.000001", 1e-6), ("1E-5", 1e-5)])
def test_small_learning_rates_through_dvc_exp_run(project, value, expected):
    proc = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", f"train.lr={value}"], project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = (project / "params.yaml").read_text(encoding="utf-8")
    assert "lr: 1e-0" in written or "lr: 1E-0" in written  # DVC's own spelling, which YAML 1.1 reads as text
    assert load_config(project / "params.yaml").train.lr == expected
    assert (project / "data/problems.jsonl").read_text().count("\n") == 3


def test_a_real_string_is_still_refused(project):
    proc = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "train.lr='fast'"], project)
    assert proc.returncode != 0 and "field 'train.lr'" in proc.stderr + proc.stdout


def test_paper_preset_command_passes_the_params_and_fails_fast_offline(project):
    """The README's paper command here (no hub): the typed params accept every value, and fetch stops
    at once with one line naming data.source, not a params error."""
    preset = _run([sys.executable, "-m", "daj.presets", str(REPO / "presets/paper.yaml"), "--shell",
                   "--params", str(project / "params.yaml")], project)
    assert preset.returncode == 0, preset.stderr
    proc = _run([sys.executable, "-m", "dvc", "exp", "run", *shlex.split(preset.stdout), "-S", "reweight=domain"],
                project)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error in stage")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    # the preflight's line (one TCP probe), not the hub client's retries
    assert "field 'data.source'" in errors[0] and "hub, which is out of reach" in errors[0]
    assert load_config(project / "params.yaml").train.lr == 1e-6  # the paper's rate, as DVC wrote it

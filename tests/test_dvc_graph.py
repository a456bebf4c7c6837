"""The DVC graph tells the truth: every project file a stage runs is one of its deps, bytecode never
changes a dependency's hash, and the committed dvc.lock was produced by the committed code and params."""

from __future__ import annotations

import compileall
import json
import subprocess
import sys

import pytest

from daj import stage_deps
from daj.paths import REPO

STAGES = [name for name in stage_deps.dvc_stages() if (REPO / "stages" / f"{name}.py").is_file()]


def test_every_stage_lists_the_files_it_runs():
    assert stage_deps.missing_deps() == {}
    assert stage_deps.stale_deps() == {}


@pytest.mark.parametrize("stage", STAGES)
def test_what_a_fresh_interpreter_loads_is_in_the_deps(stage):
    """Importing the stage's module (and with it every module-level import) loads only project files
    that its dvc.yaml deps cover; the static reading of daj.stage_deps covers the function-level ones."""
    code = ("import importlib, json, sys; importlib.import_module(sys.argv[2]); root = sys.argv[1]; "
            "print(json.dumps(sorted(m.__file__[len(root) + 1:] for m in list(sys.modules.values()) "
            "if getattr(m, '__file__', None) and m.__file__.startswith(root + '/') "
            "and '/.venv/' not in m.__file__)))")
    proc = subprocess.run([sys.executable, "-c", code, str(REPO), f"stages.{stage}"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    deps = stage_deps.dvc_stages()[stage]
    assert loaded and not [f for f in loaded if not stage_deps.covered(f, deps)]
    assert set(loaded) <= set(stage_deps.stage_files(stage))  # the static reading sees at least as much


def _changed_code(status: dict) -> dict:
    """From `dvc status --json`: per stage, the changed code deps and params (data that a clone has not
    produced yet, outputs and data deps, is left out)."""
    out = {}
    for stage, entries in status.items():
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            for path, what in entry.get("changed deps", {}).items():
                if path == "params.yaml" or path.split("/")[0] in stage_deps.PACKAGES:
                    out.setdefault(stage, {})[path] = what
    return out


def test_bytecode_and_a_test_run_change_no_dependency_of_the_committed_lock():
    """After compiling every module (what `make test` leaves behind), `dvc status` finds the code and
    params deps of every stage equal to the committed dvc.lock: a test run reruns nothing, and the
    committed metrics were produced by the committed code."""
    for package in stage_deps.PACKAGES:
        compileall.compile_dir(str(REPO / package), quiet=1)
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _changed_code(json.loads(proc.stdout or "{}")) == {}

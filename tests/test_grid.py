"""The queued grid across devices (daj/grid.py), for real: a temporary git + DVC project with a tiny
pipeline, four cells queued with `dvc exp run --queue`, two workers on two fake devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daj.errors import DajError
from daj.grid import queued_cells, run_grid

STAGE = """
import json, os, time, yaml
params = {**yaml.safe_load(open("params.yaml")), **yaml.safe_load(open("extra.yaml"))}
start = time.time()
time.sleep(1.0)
os.makedirs("metrics", exist_ok=True)
json.dump({"a": params["a"], "b": params["b"], "c": params["c"], "device": os.environ.get("CUDA_VISIBLE_DEVICES"),
           "start": start, "end": time.time(), "cwd": os.getcwd()}, open("metrics/cell.json", "w"))
"""
PIPELINE = """
stages:
  cell:
    cmd: python stage.py
    deps: [stage.py]
    params: [a, b, extra.yaml: [c]]
    metrics:
      - metrics/cell.json:
          cache: false
"""


def sh(cwd: Path, *cmd: str) -> str:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"{cmd}: {out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture()
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # dvc, python
    root = tmp_path / "project"
    root.mkdir()
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.email", "grid@test")
    sh(root, "git", "config", "user.name", "grid")
    sh(root, "dvc", "init", "-q")
    (root / "stage.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(PIPELINE)
    (root / "params.yaml").write_text("a: 0\nb: 0\n")
    (root / "extra.yaml").write_text("c: 0\n")
    sh(root, "dvc", "repro", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline")
    return root


def experiments(root: Path) -> dict[str, dict]:
    """name -> metrics of each experiment `dvc exp show` lists."""
    rows = json.loads(sh(root, "dvc", "exp", "show", "--json"))
    found = {}
    for baseline in rows:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                found[rev["name"]] = rev["data"]["metrics"]["metrics/cell.json"]["data"]
    return found


@pytest.mark.slow
def test_two_workers_two_devices_each_cell_from_the_committed_params(project):
    # each cell changes ONE key, in one of two params files: a leak would show as another cell's value
    # (each worker runs two cells, so the one that ran c5 runs another after it)
    cells = {"c5": "extra.yaml:c=5", "a1": "a=1", "b2": "b=2", "a3": "a=3"}
    for name, override in cells.items():
        sh(project, "dvc", "exp", "run", "--queue", "-S", override, "-n", name, "-q")
    assert [c.name for c in queued_cells(project)] == list(cells)
    # an uncommitted edit of the workspace after queueing: no cell may see it, and it stays
    (project / "params.yaml").write_text("a: 99\nb: 99\n")

    outcomes = run_grid(project, ["0", "1"])

    assert sorted(o.cell for o in outcomes) == sorted(cells) and all(o.ok for o in outcomes), outcomes
    found = experiments(project)
    assert set(found) == set(cells)  # `dvc exp show` lists every cell
    for name, override in cells.items():
        key, value = override.split(":")[-1].split("=")
        expected = {"a": 0, "b": 0, "c": 0, key: int(value)}
        assert {k: found[name][k] for k in "abc"} == expected, (name, found[name])
    device_of = {o.cell: o.devices for o in outcomes}
    for name, m in found.items():  # each cell ran pinned to its worker's device, in a clone
        assert m["device"] == device_of[name]
        assert not m["cwd"].startswith(str(project) + os.sep + "metrics") and m["cwd"] != str(project)
    assert set(device_of.values()) == {"0", "1"}
    for device in ("0", "1"):  # one cell at a time per device
        spans = sorted((m["start"], m["end"]) for n, m in found.items() if device_of[n] == device)
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False)), spans
    assert queued_cells(project) == []  # the queue is empty
    assert (project / "params.yaml").read_text() == "a: 99\nb: 99\n"  # the workspace untouched


def test_a_failing_cell_stays_queued_and_is_reported(project):
    sh(project, "dvc", "exp", "run", "--queue", "-S", "a=oops-not-a-number", "-n", "bad", "-q")
    (project / "stage.py").write_text(STAGE.replace("params[\"a\"]", "int(params[\"a\"])"))
    sh(project, "git", "commit", "-qam", "stage parses a")
    # queued on the previous commit: left alone, with a warning
    assert run_grid(project, ["0"]) == []
    sh(project, "dvc", "queue", "remove", "bad")
    sh(project, "dvc", "exp", "run", "--queue", "-S", "a=oops-not-a-number", "-n", "bad", "-q")
    [outcome] = run_grid(project, ["0"])
    assert not outcome.ok and "exited with" in outcome.error and Path(outcome.log).is_file()
    assert [c.name for c in queued_cells(project)] == ["bad"]


@pytest.mark.parametrize("devices", [[], ["0", "0"], ["0;rm -rf /"]])
def test_bad_device_lists_are_refused(tmp_path, devices):
    with pytest.raises(DajError):
        run_grid(tmp_path, devices)

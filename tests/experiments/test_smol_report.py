"""The smol experiment report: run folders with known metrics render the expected table cells."""

from __future__ import annotations

import json
import os

import pytest

from daj.errors import DajError
from experiments.smol.report import load_runs, main, render


def judge_metrics(acc: float, p1: float) -> dict:
    return {"accuracy": acc, "accuracy_by_order": {"pass_first": p1, "pass_second": 2 * acc - p1},
            "both_orders_accuracy": 0.25, "position1_rate": 0.5, "format_error_rate": 0.0,
            "accuracy_by_difficulty": {"easy": 1.0, "medium": None, "hard": 0.5}, "n_pairs": 48}


def write_run(root, name: str, acc: float, judge_pct: float, mtime: int) -> None:
    d = root / name
    d.mkdir()
    (d / "pairwise.json").write_text(json.dumps({"split": "test", "judges": {
        "base": judge_metrics(0.5, 0.75), "trained": judge_metrics(acc, 0.5)}}))
    (d / "bon.json").write_text(json.dumps({"lcb3": {
        "random": {"overall": 60.0, "easy": 90.0, "medium": 70.0, "hard": 40.0, "n": 113},
        "oracle": {"overall": 80.0, "easy": 100.0, "medium": 90.0, "hard": 60.0, "n": 113},
        "judge": {"overall": judge_pct, "easy": 90.0, "medium": 70.0, "hard": 40.0, "n": 113}}}))
    (d / "train.json").write_text(json.dumps({"objective": "kto", "steps": 20, "final_loss": 0.6, "meta_loss": 0.7}))
    (d / "run.log").write_text("Running stage 'train':\n[train] done in 321.5 s\n[bon] done in 12.0 s\n")
    (d / "seconds").write_text("400\n")
    os.utime(d, (mtime, mtime))


def test_report_tables(tmp_path):
    write_run(tmp_path, "none", 0.5625, 61.5, 1000)
    write_run(tmp_path, "domain", 0.625, 63.0, 2000)
    runs = load_runs(tmp_path)
    assert list(runs) == ["none", "domain"] and runs["none"]["stages"] == {"train": 321.5, "bon": 12.0}
    text = render(runs)
    assert "| base (no training) | 50.0 | 75.0 | 25.0 | 25.0 | 50.0 | 0.0 | 100.0 | – | 50.0 | 48 |" in text
    assert "| trained, reweight=none | 56.2 | 50.0 | 62.5 |" in text
    assert "| trained, reweight=domain | 62.5 |" in text
    assert text.count("base (no training)") == 1 and text.count("| random (lcb3) |") == 1
    assert "| judge, reweight=domain (lcb3) | 63.0 | 90.0 | 70.0 | 40.0 | 113 |" in text
    assert "| none | cached | cached | cached | cached | cached | 322 | cached | 12 | 400.0 |" in text
    out = tmp_path / "report.md"
    main([str(tmp_path), "--out", str(out)])
    assert out.read_text() == text


def test_report_errors(tmp_path):
    with pytest.raises(DajError):
        load_runs(tmp_path / "absent")
    with pytest.raises(DajError, match="no run folders"):
        load_runs(tmp_path)
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "bon.json").write_text("{not json")
    with pytest.raises(DajError, match="invalid JSON"):
        load_runs(tmp_path)

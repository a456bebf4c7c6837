"""The Best-of-N reports: Table 2 (every method with intervals), Table 4 (objective x reweighting) with the
params that differ, warnings for runs that are not comparable, duplicates kept; README figures generated
from the committed metrics."""

import json
import shutil

import pytest

from daj.errors import DajError
from daj.eval.report import (
    BEGIN,
    END,
    collect_rows,
    main,
    pick_table2_run,
    readme_block,
    render,
    replace_block,
)
from daj.paths import REPO

BASE_PARAMS = {"seed": 0, "reweight": "none", "train": {"objective": "dpo", "steps": 12, "lr": 1e-4},
               "bon": {"rounds": 8}, "caches": {"judge": ".cache/judge"}}


def _bon(judge_overall):
    return {"mutants": {
        "random": {"overall": 40.0, "easy": 50.0, "medium": 40.0, "hard": 30.0, "n": 33, "ci95": [31.0, 49.0]},
        "oracle": {"overall": 90.0, "easy": 95.0, "medium": 90.0, "hard": 85.0, "n": 33},
        "prm": {"overall": 42.0, "easy": 51.0, "medium": 41.0, "hard": 33.0, "n": 33, "ci95": [30.0, 55.0]},
        "grm": {"overall": 41.0, "easy": 50.0, "medium": 40.0, "hard": 33.0, "n": 33, "ci95": [30.0, 54.0],
                "unparsable": 7},
        "judge": {"overall": judge_overall, "easy": 60.0, "medium": 50.0, "hard": 40.0, "n": 33,
                  "ci95": [judge_overall - 9, judge_overall + 9],
                  "minus_random": {"diff": judge_overall - 40.0, "ci95": [1.0, 9.5]}},
    }}


def _exp(name, objective, reweight, judge_overall, meta_loss=0.5, **params):
    p = json.loads(json.dumps(BASE_PARAMS))
    p["reweight"], p["train"]["objective"] = reweight, objective
    for dotted, value in params.items():
        section, key = dotted.split("__")
        p[section][key] = value
    return {
        "rev": name * 3, "name": name,
        "data": {"params": {"params.yaml": {"data": p}},
                 "metrics": {"metrics/bon.json": {"data": _bon(judge_overall)},
                             "metrics/train.json": {"data": {"objective": objective, "reweight": reweight,
                                                             "meta_loss": meta_loss}}}},
    }


def test_table4_rows_with_params_that_differ(tmp_path):
    base = _exp("main", "dpo", "none", 45.0)
    base["experiments"] = [{"revs": [_exp("exp-a", "kto", "domain", 55.5)]},
                           {"revs": [_exp("exp-b", "dpo", "instance_net", 47.25, caches__judge="/tmp/c")]}]
    rows = collect_rows([base])
    assert [(r["objective"], r["reweight"]) for r in rows] == [("dpo", "instance_net"), ("dpo", "none"),
                                                                ("kto", "domain")]
    text = render(rows)
    assert "| kto | domain | 55.5 | 60.0 | 50.0 | 40.0 | [46.5, 64.5] | +15.5 [1.0, 9.5] | 33 | 0.5000 | exp-a " \
           "| reweight=domain, train.objective=kto |" in text
    assert "| dpo | none | 45.0 |" in text and "| main | (none) |" in text
    header, rule = [line for line in text.splitlines() if line.startswith("| objective") or line.startswith("|---")][:2]
    assert header.count("|") == rule.count("|")  # a well-formed markdown table
    assert "caches" not in text  # where a cache lives is never a difference
    assert "Warning" not in text and "Note" not in text  # only the grid axes differ
    saved = tmp_path / "show.json"
    saved.write_text(json.dumps([base]))
    assert main(["--json", str(saved), "--out", str(tmp_path / "report.md")]) == 0
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Best-of-N report") and "Table 2 layout" in report and "run `main`" in report


def test_runs_that_differ_outside_the_grid_are_flagged_and_duplicates_kept():
    """R = 4 beside R = 8 and 120 steps beside 12 (issue 26): a warning names them; two runs of one cell
    are both shown with what tells them apart."""
    base = _exp("main", "dpo", "none", 45.0)
    base["experiments"] = [{"revs": [_exp("exp-r4", "kto", "domain", 50.0, bon__rounds=4)]},
                           {"revs": [_exp("exp-120", "kto", "domain", 52.0, train__steps=120)]},
                           {"revs": [_exp("exp-again", "dpo", "none", 45.0)]}]
    rows = collect_rows([base])
    assert len(rows) == 4  # nothing dropped
    text = render(rows)
    assert "| exp-r4 | bon.rounds=4, reweight=domain, train.objective=kto |" in text
    assert "| exp-120 | reweight=domain, train.objective=kto, train.steps=120 |" in text
    warning = next(line for line in text.splitlines() if "**Warning**" in line)
    assert "`bon.rounds`: " in warning and "exp-r4=4" in warning and "`train.steps`" in warning
    assert "exp-120=120" in warning
    notes = [line for line in text.splitlines() if line.startswith("- Note")]
    assert any("(kto, domain) has 2 runs" in n and "exp-r4" in n and "exp-120" in n and "bon.rounds" in n
               for n in notes)
    assert any("(dpo, none) has 2 runs" in n and "their params are identical (reruns)" in n for n in notes)


def test_table2_layout_has_every_method_with_intervals():
    base = _exp("main", "dpo", "none", 45.0)
    name, bon = pick_table2_run([base], None)
    text = render(collect_rows([base]), (name, bon))
    table2 = text.split("## Table 2 layout", 1)[1].split("\n\n", 2)[1].splitlines()[2:]
    assert [line.split(" | ")[0] for line in table2] == [
        "| random (exact)", "| PRM (Skywork-style)", "| GRM (DeepSeek-style) (7 answers without a score)",
        "| judge (DaJ)", "| oracle"]  # the paper's order: references, the baselines, the judge, the bound
    assert "| PRM (Skywork-style) | 42.0 | [30.0, 55.0] | 51.0 | 41.0 | 33.0 |" in text
    assert "judge - random +5.0 [1.0, 9.5]" in text
    with pytest.raises(DajError, match="no run named"):
        pick_table2_run([base], "nope")


def test_no_experiments_says_so():
    assert "No experiment" in render(collect_rows([{"rev": "x", "name": "main", "data": {}}]))


def test_readme_figures_are_the_committed_metrics():
    """README's generated block is exactly what the committed metrics give: it fails when they disagree."""
    readme = (REPO / "README.md").read_text()
    block = readme_block(REPO / "metrics", REPO / "params.yaml")
    assert replace_block(readme, block) == readme, \
        "README.md and metrics/ disagree: run `python -m daj.eval.report --readme`"


def test_readme_check_fails_on_a_stale_figure(tmp_path, monkeypatch):
    for name in ("split.json", "execute.json", "pairs.json", "bon.json", "pairwise.json"):
        (tmp_path / "metrics").mkdir(exist_ok=True)
        shutil.copy(REPO / "metrics" / name, tmp_path / "metrics" / name)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "README.md").write_text(f"# t\n\nbefore\n\n{BEGIN}\nold figures\n{END}\n\nafter\n")
    monkeypatch.chdir(tmp_path)
    assert main(["--readme", "--check"]) == 1
    assert main(["--readme"]) == 0 and main(["--readme", "--check"]) == 0
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# t\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "old figures" not in text
    bon = json.loads((tmp_path / "metrics/bon.json").read_text())
    next(iter(bon.values()))["random"]["overall"] += 1.0
    (tmp_path / "metrics/bon.json").write_text(json.dumps(bon))
    assert main(["--readme", "--check"]) == 1
    (tmp_path / "README.md").write_text("no markers\n")
    assert main(["--readme"]) == 2

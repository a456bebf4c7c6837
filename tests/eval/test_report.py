"""The Table 4 report renders objective x reweighting rows from `dvc exp show --json` output."""

from daj.eval.report import collect_rows, main, render


def _exp(name, objective, reweight, judge_overall, meta_loss=0.5):
    return {
        "rev": name * 3, "name": name,
        "data": {
            "params": {"params.yaml": {"data": {"reweight": reweight, "train": {"objective": objective}}}},
            "metrics": {
                "metrics/bon.json": {"data": {"mutants": {
                    "random": {"overall": 40.0, "easy": 50.0, "medium": 40.0, "hard": 30.0, "n": 33},
                    "oracle": {"overall": 90.0, "easy": 95.0, "medium": 90.0, "hard": 85.0, "n": 33},
                    "judge": {"overall": judge_overall, "easy": 60.0, "medium": 50.0, "hard": 40.0, "n": 33},
                }}},
                "metrics/train.json": {"data": {"objective": objective, "reweight": reweight,
                                                "meta_loss": meta_loss}},
            },
        },
    }


def test_rows_and_markdown(tmp_path):
    base = _exp("main", "dpo", "none", 45.0)
    base["experiments"] = [{"revs": [_exp("exp-a", "kto", "domain", 55.5)]},
                           {"revs": [_exp("exp-b", "dpo", "instance_net", 47.25)]}]
    rows = collect_rows([base])
    assert [(r["objective"], r["reweight"]) for r in rows] == [("dpo", "instance_net"), ("dpo", "none"),
                                                                ("kto", "domain")]
    text = render(rows)
    assert "| kto | domain | 55.5 | 60.0 | 50.0 | 40.0 | 33 | 0.5000 | exp-a |" in text
    assert "| random | - | 40.0 | 50.0 | 40.0 | 30.0 | 33 | - | - |" in text
    saved = tmp_path / "show.json"
    import json
    saved.write_text(json.dumps([base]))
    main(["--json", str(saved), "--out", str(tmp_path / "report.md")])
    assert (tmp_path / "report.md").read_text().startswith("# Best-of-N report")


def test_no_experiments_says_so():
    assert "No experiment" in render(collect_rows([{"rev": "x", "name": "main", "data": {}}]))

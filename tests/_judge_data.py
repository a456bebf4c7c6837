"""A small real pipeline workspace for the pairs and bon stage tests: HumanEval problems, candidates
(the reference, a reformatted copy of it, wrong programs) and their verdicts, in data/."""

from __future__ import annotations

from pathlib import Path

import yaml

from daj.data.humaneval import load_humaneval_package
from daj.data.schema import domain_of
from daj.io import write_jsonl

REPO = Path(__file__).resolve().parents[1]


def wrong_programs(problem: dict) -> list[str]:
    """Programs that fail HumanEval's checks: a constant answer and an exception."""
    return [problem["prompt"] + "    return None\n", problem["prompt"] + "    raise NotImplementedError\n"]


def make_workspace(root: Path, model_dir: str, per_split: int = 3, **overrides) -> None:
    """data/splits, data/candidates/mutants.jsonl, data/verdicts/mutants.jsonl and params.yaml in `root`."""
    problems = load_humaneval_package()[: 3 * per_split]
    cands, verdicts = [], []
    for k, split in enumerate(("lower", "upper", "test")):
        rows = [{**p, "split": split, "domain": domain_of(p)} for p in problems[k * per_split:(k + 1) * per_split]]
        write_jsonl(root / f"data/splits/{split}.jsonl", rows)
    for p in problems:
        ref = p["reference"]
        codes = [(wrong_programs(p)[0], False, True), (ref, True, True),
                 (ref.replace("\n", "\n\n", 1) + "# same program\n", True, True), (wrong_programs(p)[1], False, False)]
        for i, (code, passed, public) in enumerate(codes):
            cands.append({"problem_id": p["id"], "policy": "mutants", "index": i, "code": code})
            verdicts.append({"problem_id": p["id"], "policy": "mutants", "index": i, "passed": passed,
                             "public_passed": public, "status": "pass" if passed else "fail",
                             "tests_passed": 1 if passed else 0, "tests_total": 1})
    write_jsonl(root / "data/candidates/mutants.jsonl", cands)
    write_jsonl(root / "data/verdicts/mutants.jsonl", verdicts)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["judge"].update({"model": model_dir, "max_new_tokens": 12,
                            "engine_options": {"device": "cpu", "batch_size": 8}})
    params["caches"]["judge"] = str(root / ".cache/judge")
    params["bon"]["rounds"] = 4
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params))

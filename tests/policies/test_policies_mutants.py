"""The mutants backend on real HumanEval references."""

from __future__ import annotations

import ast
from collections import Counter

import pytest

from daj.data.humaneval import load_humaneval_package
from daj.data.measures import canonical_code
from daj.errors import DajError
from daj.policies.mutants import KINDS, make_mutants, problem_mutants

PROBLEMS = {p["id"]: p for p in load_humaneval_package()}

REF = '''import math


def f(xs, k):
    """Docstring stays."""
    total = 0  # running sum
    for i in range(len(xs) - 1):
        if xs[i] < k and xs[i + 1] != 0:
            total += xs[i] * 2
    return max(total, 0) if total > 0 else math.floor(1.5)
'''


def _signature(code: str, entry: str) -> tuple:
    fn = next(n for n in ast.parse(code).body if isinstance(n, ast.FunctionDef) and n.name == entry)
    return ast.dump(fn.args), ast.get_docstring(fn), [ast.dump(d) for d in fn.decorator_list]


def test_every_kind_distinct_and_signature_kept():
    cands = make_mutants(REF, "f", n=40, seed=0, key="x")
    kinds = Counter(c["mutation"] for c in cands)
    assert kinds[None] == 1 and set(kinds) - {None} == set(KINDS)
    norms = [canonical_code(c["code"]) for c in cands]
    assert len(set(norms)) == len(cands)
    assert [c["index"] for c in cands] == list(range(len(cands)))
    for c in cands:
        assert _signature(c["code"], "f") == _signature(REF, "f")
        assert c["code"].startswith("import math\n")
    # the splice keeps formatting: most mutants differ from the reference on one line only
    one_line = sum(1 for c in cands if c["mutation"] and len(set(c["code"].splitlines()) - set(REF.splitlines())) <= 1)
    assert one_line == len(cands) - 1
    assert "# running sum" in next(c["code"] for c in cands if c["mutation"] == "comparison")


def test_deterministic_and_seed_dependent():
    p = PROBLEMS["humaneval/HumanEval/0"]
    a, b = problem_mutants(p, 8, seed=0), problem_mutants(p, 8, seed=0)
    assert a == b
    c = problem_mutants(p, 8, seed=1)
    assert [x["code"] for x in a] != [x["code"] for x in c]


def test_reference_position_is_random_and_exact():
    positions = Counter()
    for pid in list(PROBLEMS)[:60]:
        cands = problem_mutants(PROBLEMS[pid], 8, seed=0)
        ref = [c for c in cands if c["mutation"] is None]
        assert len(ref) == 1 and ref[0]["code"] == PROBLEMS[pid]["reference"]
        positions[ref[0]["index"]] += 1
    assert len(positions) >= 5 and positions[0] < 30  # not always first


def test_humaneval_distinct_candidates():
    """Most HumanEval tasks get >= 4 distinct candidates out of n=8; all mutants parse."""
    counts = Counter()
    for p in PROBLEMS.values():
        cands = problem_mutants(p, 8, seed=0)
        for c in cands:
            ast.parse(c["code"])
        counts[len({canonical_code(c["code"]) for c in cands})] += 1
    assert sum(v for k, v in counts.items() if k >= 4) >= 0.85 * len(PROBLEMS)
    assert counts[8] >= 0.75 * len(PROBLEMS)


def test_errors():
    with pytest.raises(DajError, match="no top-level function 'g'"):
        make_mutants(REF, "g", 4, 0)
    with pytest.raises(DajError, match="does not parse"):
        make_mutants("def f(:\n", "f", 4, 0)
    with pytest.raises(DajError, match="no reference"):
        problem_mutants({"id": "lcb/1", "reference": None, "tests": {"entry_point": None}}, 4, 0)

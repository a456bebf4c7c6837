"""The judge prompt carries every element of the paper's Listing 1 (in our words), has no system message,
and shares its truncation budget by water-filling."""

from __future__ import annotations

import random
import re

import pytest

from daj.judge.prompt import MARKER, build_messages, problem_fields, share_budget, truncate_middle

PROBLEM = {
    "id": "lcb/abc301_a", "title": "Overall Winner", "platform": "atcoder", "difficulty": "easy",
    "statement": "Takahashi and Aoki played N games. Print the overall winner.",
    "starter_code": "",
    "tests": {"type": "stdin", "public": [{"input": "5\nTTAAT\n", "output": "T\n"}]},
}
GOOD = "n = int(input())\ns = input()\nprint('T' if s.count('T') > s.count('A') else 'A')\n"
BAD = "print('T')\n"

# Listing 1's checks, step by step (paraphrased in the prompt; these are the phrases that carry them)
STEP_CHECKS = {
    1: ["syntax", "complete", "defined before it is used", "imported", "signature", "return statement"],
    2: ["type of problem", "line by line", "operator", "loop bound", "conditional", "off-by-one",
        "integer overflow", "`<` where `<=`", "loops that may never end", "exactly what the statement requires"],
    3: ["size", "empty input", "single element", "largest allowed input", "values", "zero", "negative",
        "minimum and maximum", "duplicates", "structure", "sorted", "all elements equal", "problem-specific",
        "graphs", "cycles", "strings", "trees", "intervals"],
    4: ["input parsed exactly", "spacing", "newlines", "precision", "order"],
    5: ["divide by zero", "index out of range", "loop forever", "stack", "recursion", "time and space complexity"],
}
# the other elements of Listing 1
ELEMENTS = ["## Problem", "## Starter code", "## Example tests", "## Candidate 1", "## Candidate 2",
            "Hidden tests", "edge cases", "skeptical and rigorous", "most likely to pass all tests",
            "Overall Winner", "atcoder", "easy", "TTAAT"]


def body(problem=PROBLEM, codes=(GOOD, BAD), max_chars=6000) -> str:
    chat = build_messages(problem, list(codes), max_chars)
    assert [m["role"] for m in chat] == ["user"], "the paper's prompt is one user message, no system message"
    return chat[0]["content"]


def steps(text: str) -> dict[int, str]:
    """The text of each numbered step (from 'k. ' at a line start to the next step or section)."""
    found = {int(m.group(1)): m.start() for m in re.finditer(r"^([1-5])\. ", text, re.MULTILINE)}
    assert sorted(found) == [1, 2, 3, 4, 5], "the five steps, numbered, in order"
    starts = [found[k] for k in range(1, 6)]
    assert starts == sorted(starts)
    ends = starts[1:] + [text.index("\n\n", starts[-1])]
    return {k: text[s:e] for k, s, e in zip(range(1, 6), starts, ends, strict=True)}


def test_every_element_of_listing_1_is_there():
    text = body()
    lower = text.lower()
    for element in ELEMENTS:
        assert element.lower() in lower, element
    per_step = steps(text)
    for k, checks in STEP_CHECKS.items():
        for check in checks:
            assert check.lower() in per_step[k].lower(), (k, check)
    # the warning names the hidden tests and what they catch, in one paragraph
    warning = next(p for p in text.split("\n\n") if "Hidden tests" in p)
    assert "edge cases" in warning and "not enough" in warning
    # sections in the paper's order: problem, starter code, examples, candidates; the steps; the answer
    order = [text.index(s) for s in ("## Problem", "## Starter code", "## Example tests", "## Candidate 1",
                                     "## Candidate 2", "1. Syntax")]
    assert order == sorted(order)
    assert text.index(GOOD.strip()) < text.index(BAD.strip())


def test_answer_format_and_index_range():
    for k in (2, 3, 5):
        text = body(codes=[GOOD, BAD, GOOD, BAD, GOOD][:k])
        assert text.rstrip().endswith("<selection>INDEX</selection>")
        assert f"(1 to {k})" in text.splitlines()[-2]
        assert f"## Candidate {k}" in text and f"## Candidate {k + 1}" not in text
    with pytest.raises(ValueError):
        build_messages(PROBLEM, [GOOD], 6000)


def test_starter_code_section_is_always_shown():
    without = body()
    section = without.split("## Starter code\n", 1)[1].split("\n\n", 1)[0]
    assert "none" in section.lower()
    starter = "class Solution:\n    def winner(self, s: str) -> str:\n"
    shown = body({**PROBLEM, "starter_code": starter})
    assert f"## Starter code\n```python\n{starter}\n```" in shown
    no_tests = body({**PROBLEM, "tests": {"type": "stdin", "public": []}})
    assert "none" in no_tests.split("## Example tests\n", 1)[1].split("\n\n", 1)[0].lower()


def test_no_system_message_in_the_rendered_prompt(tiny_model):
    from daj.judge.prompt import render_prompt
    from daj.models.loading import load_tokenizer

    text = render_prompt(load_tokenizer(tiny_model), build_messages(PROBLEM, [GOOD, BAD], 6000))
    assert "system" not in text.split("Overall Winner")[0]
    assert text.count("<|im_start|>") == 2 and text.rstrip().endswith("<|im_start|>assistant")


def test_share_budget_is_water_filling():
    rng = random.Random(0)
    for _ in range(3000):
        lengths = [rng.choice([0, 1, 5, rng.randint(0, 400), rng.randint(0, 5000)]) for _ in range(rng.randint(1, 7))]
        budget = rng.randint(0, 6000)
        limits = share_budget(lengths, budget)
        assert all(0 <= lim <= n for lim, n in zip(limits, lengths, strict=True))
        assert sum(limits) <= budget
        cut = [i for i, (lim, n) in enumerate(zip(limits, lengths, strict=True)) if lim < n]
        if not cut:
            assert sum(lengths) <= budget or budget == sum(limits)
            continue
        assert sum(limits) == budget  # a cut field means the budget is used up
        level = min(limits[i] for i in cut)
        assert max(limits[i] for i in cut) - level <= 1  # every cut field gets the same room (up to rounding)
        whole = [n for i, n in enumerate(lengths) if i not in cut]
        assert all(n <= level + 1 for n in whole)  # a field is cut only when it is longer than the level
    assert share_budget([10, 5000, 5000], 1000) == [10, 495, 495]
    assert share_budget([], 100) == []


def test_truncate_middle_keeps_head_tail_and_counts():
    rng = random.Random(1)
    for _ in range(500):
        text = "".join(rng.choice("ab\ncd") for _ in range(rng.randint(0, 3000)))
        limit = rng.randint(0, 3500)
        cut = truncate_middle(text, limit)
        if len(text) <= limit:
            assert cut == text
            continue
        m = re.search(r"\n\.\.\. \[(\d+) characters omitted\] \.\.\.\n", cut)
        assert m is not None
        head, tail = cut[:m.start()], cut[m.end():]
        assert text.startswith(head) and text.endswith(tail)
        assert len(head) + len(tail) + int(m.group(1)) == len(text)
        if limit >= len(MARKER.format(n=len(text))):
            assert len(cut) <= limit


def test_prompt_fields_respect_the_budget():
    long_code = "".join(f"x{i} = {i}\n" for i in range(2000))
    problem = {**PROBLEM, "statement": "S" * 20000, "starter_code": "def f():\n    pass\n"}
    for budget in (300, 3000, 9000):
        text = body(problem, [long_code, BAD], budget)
        fields = [*problem_fields(problem), long_code, BAD]
        limits = share_budget([len(f) for f in fields], budget)
        shown = [truncate_middle(f, lim) for f, lim in zip(fields, limits, strict=True)]
        assert sum(map(len, shown)) <= budget + 2 * len(MARKER.format(n=99999))
        for piece in shown:
            assert piece in text
        assert BAD.strip() in text  # the short candidate stays whole

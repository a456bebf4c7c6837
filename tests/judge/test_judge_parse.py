"""Parsing judge responses that look like what real judges write."""

from daj.config import RewardConfig
from daj.judge.parse import parse_selection
from daj.judge.reward import label_of, reward_of

REVIEW_THEN_ANSWER = """Let me review both candidates.

**Candidate 1**
1. Syntax: fine. 2. Correctness: the loop `for i in range(n - 1)` skips the last element -> off by one.

**Candidate 2**
All five checks pass; it handles n = 1 and runs in O(n log n).

Candidate 2 is more likely to pass the hidden tests.

<selection>2</selection>"""

CHANGES_MIND = """First impression: <selection>1</selection> looks right...
Wait, candidate 1 divides by zero when the list is empty. Re-checking candidate 2: it guards that case.
Final answer: <selection> 2 </selection>"""

TAG_IN_CODE_LAST = """Both read input the same way. Candidate 1 prints the tag literally:
<selection>1</selection>
```python
print("<selection>2</selection>")
```"""

TAG_ONLY_IN_CODE = """```python
def answer():
    return "<selection>1</selection>"
```"""

UNCLOSED_FENCE = """Final: <selection>2</selection>
```python
x = "<selection>1</selection>"
"""


def test_single_tag_after_reasoning():
    assert parse_selection(REVIEW_THEN_ANSWER, 2) == 2


def test_last_tag_wins():
    assert parse_selection(CHANGES_MIND, 2) == 2
    assert parse_selection("<selection>2</selection> no, <selection>1</selection>", 2) == 1


def test_tags_inside_code_fences_are_ignored():
    assert parse_selection(TAG_IN_CODE_LAST, 2) == 1
    assert parse_selection(TAG_ONLY_IN_CODE, 2) is None
    assert parse_selection(UNCLOSED_FENCE, 2) == 2  # an unclosed fence runs to the end


def test_format_errors():
    assert parse_selection("Candidate 2 is better.", 2) is None  # no tag
    assert parse_selection("I pick <selection>2", 2) is None  # no closing tag
    assert parse_selection("<selection>3</selection>", 2) is None  # out of range
    assert parse_selection("<selection>0</selection>", 2) is None
    assert parse_selection("<selection>-1</selection>", 2) is None
    assert parse_selection("<selection>two</selection>", 2) is None
    assert parse_selection("<selection>1, 2</selection>", 2) is None
    assert parse_selection("", 2) is None
    # the last tag wins even when it is broken: an earlier valid one does not rescue it
    assert parse_selection("<selection>1</selection> ... <selection>candidate 2</selection>", 2) is None


def test_range_follows_candidate_count():
    assert parse_selection("<selection>3</selection>", 3) == 3
    assert parse_selection("<selection>10</selection>", 12) == 10
    assert parse_selection("<selection>10</selection>", 9) is None


def test_reward_levels_and_labels():
    levels = RewardConfig(correct=2.0, wrong=-0.5, format_error=-3.0)
    assert reward_of(parse_selection(REVIEW_THEN_ANSWER, 2), 2, levels) == (2.0, "correct")
    assert reward_of(parse_selection(REVIEW_THEN_ANSWER, 2), 1, levels) == (-0.5, "wrong")
    assert reward_of(parse_selection(TAG_ONLY_IN_CODE, 2), 1, levels) == (-3.0, "format_error")
    assert RewardConfig() == RewardConfig(correct=1.0, wrong=0.0, format_error=-1.0)
    try:
        label_of(1, 0)
    except ValueError:
        pass
    else:
        raise AssertionError("a pair without exactly one passing program has no reward")

"""Code extraction from model responses."""

from __future__ import annotations

from daj.policies.extract import extract_code


def test_last_python_block_wins():
    text = "Try:\n```python\nx = 1\n```\nBetter:\n```py\nx = 2\n```\nAnd a shell line:\n```bash\nls\n```\n"
    assert extract_code(text) == "x = 2\n"


def test_other_language_block_when_no_python():
    assert extract_code("```\nprint(3)\n```") == "print(3)\n"
    assert extract_code("```cpp\nint main(){}\n```") == "int main(){}\n"


def test_prose_is_stripped_without_fences():
    text = "Here is my solution.\n\nimport sys\nn = int(sys.stdin.readline())\nprint(n * 2)\n\nIt doubles n."
    assert extract_code(text) == "import sys\nn = int(sys.stdin.readline())\nprint(n * 2)\n"
    assert extract_code("x = 1\n") == "x = 1\n"
    assert extract_code("no code at all") == "no code at all\n"
    assert extract_code("") == ""


def test_lcb_functional_keeps_class_solution():
    problem = {"tests": {"type": "functional", "func_name": "twoSum"}}
    cls = "```python\nclass Solution:\n    def twoSum(self, a, b):\n        return a + b\n```"
    assert extract_code(cls, problem).startswith("class Solution:\n    def twoSum")
    bare = "```python\ndef twoSum(self, a, b):\n    return a + b\n```"
    assert extract_code(bare, problem) == "class Solution:\n    def twoSum(self, a, b):\n        return a + b\n"


def test_humaneval_body_and_missing_imports():
    prompt = "from typing import List\n\n\ndef helper(x):\n    return x\n\n\ndef f(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n"
    problem = {"prompt": prompt, "tests": {"type": "humaneval", "entry_point": "f"}}
    assert extract_code("    return sum(xs)\n", problem) == prompt + "    return sum(xs)\n"
    full = extract_code("```python\ndef f(xs: List[int]) -> int:\n    return helper(sum(xs))\n```", problem)
    assert full.startswith("from typing import List\ndef helper(x):\n    return x")
    assert full.rstrip().endswith("return helper(sum(xs))")
    ns: dict = {}
    exec(full, ns)  # noqa: S102 - our own test string
    assert ns["f"]([1, 2]) == 3

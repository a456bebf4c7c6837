"""Small deterministic measures shared by the loaders and the splits."""

from __future__ import annotations

import ast
import math
import re
import warnings


def ast_size(code: str) -> int | None:
    """Number of AST nodes in `code`, or None when it does not parse."""
    try:
        with warnings.catch_warnings():  # real task code has invalid escapes such as "\d" in plain strings
            warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
            return sum(1 for _ in ast.walk(ast.parse(code)))
    except (SyntaxError, ValueError):
        return None


def canonical_code(code: str) -> str:
    """One program's identity up to formatting and comments: its syntax tree (ast.dump) when it parses,
    else the text with every run of whitespace made one space. Mutant dedup and vote sharing use it."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return re.sub(r"\s+", " ", code).strip()


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: HumanEval/2 before HumanEval/10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", text) if part)


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's round() rounds halves to even)."""
    return math.floor(x + 0.5 + 1e-9)


def tertile(rank: int, n: int) -> str:
    """easy / medium / hard for the rank-th smallest of n items (equal thirds, rank from 0)."""
    return ("easy", "medium", "hard")[min(2, rank * 3 // max(n, 1))]

"""Read the judge's choice from its response.

Rules:
- Only `<selection>` tags outside fenced code blocks (``` ... ```) count; a tag quoted inside code is
  not an answer. An unclosed fence runs to the end of the response.
- The last counting `<selection>` tag wins, even when it is malformed.
- Its content, up to `</selection>`, must be a whole number from 1 to the number of candidates
  (surrounding whitespace allowed). Anything else (no tag, no closing tag, not a number, out of range)
  is a format error: `parse_selection` returns None.
"""

from __future__ import annotations

import re

OPEN, CLOSE = "<selection>", "</selection>"
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_NUMBER = re.compile(r"\s*([0-9]+)\s*")


def _outside_code(text: str) -> str:
    """The text with fenced code blocks blanked out (same length, so positions are kept)."""
    return _FENCE.sub(lambda m: " " * len(m.group(0)), text)


def parse_selection(text: str, n_candidates: int) -> int | None:
    """The selected candidate (1-based), or None for a format error."""
    visible = _outside_code(text)
    start = visible.rfind(OPEN)
    if start < 0:
        return None
    body_start = start + len(OPEN)
    end = visible.find(CLOSE, body_start)
    if end < 0:
        return None
    match = _NUMBER.fullmatch(text[body_start:end])
    if not match:
        return None
    value = int(match.group(1))
    return value if 1 <= value <= n_candidates else None

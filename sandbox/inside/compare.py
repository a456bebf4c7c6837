"""Output comparison with LiveCodeBench's rules, on the trusted side (stdlib only). Never raises:
whatever a candidate wrote, a comparison that cannot be made is a wrong answer.

stdin/stdout: strip the whole output, split it into lines, strip each line; the line counts must be
equal; each line must be equal as text, or else its whitespace-separated tokens must all be equal as
Decimals (no float tolerance: "0.30000000000000004" != "0.3", while "1.0" == "1" and "1e2" == "100").
functional: a tuple result becomes a list, then `==` with the JSON-decoded expected value.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _as_decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except (InvalidOperation, ValueError):
        return None


def stdout_matches(actual: str, expected: str) -> bool:
    """True when a program's stdout is accepted for the expected output (LCB stdin rules)."""
    try:
        got, want = _lines(actual), _lines(expected)
        if len(got) != len(want):
            return False
        for g, w in zip(got, want, strict=True):
            if g == w:
                continue
            gd, wd = _as_decimals(g), _as_decimals(w)
            if gd is None or wd is None or gd != wd:
                return False
        return True
    except Exception:  # noqa: BLE001 - a signalling NaN ("sNaN") raises InvalidOperation in `!=`
        return False


def functional_matches(result: object, expected: object) -> bool:
    """True when a LeetCode method's return value equals the expected JSON value (LCB call rules)."""
    try:
        if isinstance(result, tuple):
            result = list(result)
        return bool(result == expected)
    except Exception:  # noqa: BLE001 - a comparison too deep or otherwise impossible: a wrong answer
        return False


def equal(got: object, want: object) -> bool:
    """`got == want` for plain values; False when the comparison itself fails."""
    try:
        return bool(got == want)
    except Exception:  # noqa: BLE001
        return False

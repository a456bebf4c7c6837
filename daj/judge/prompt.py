"""The judge prompt: the paper's five-step review protocol (Listing 1) over two or more candidates.

One user message and no system message (the paper has none). It holds, in our own words, every
element of the paper's Listing 1:

- the sections: the problem (title, platform, difficulty, statement), the starter code (always
  shown; "none" when the problem has none), the example tests, and the candidates `## Candidate 1`
  .. `## Candidate K`, each in a Python code block;
- the warning that hidden tests exist and catch edge cases the examples miss, the call to be
  skeptical and rigorous, and the goal: the solution most likely to pass all tests;
- the five steps, each with every check the paper lists (see STEPS);
- the required ending `<selection>INDEX</selection>`, INDEX from 1 to K.

Truncation (judge.max_prompt_chars): the variable fields (statement, starter code, example tests
and each candidate's code) share a budget of `max_chars` characters; the fixed template text is not
counted. Fields that fit in an equal share stay whole, and the budget they leave is shared among the
longer ones ("water-filling"), so every candidate gets the same room. A field cut to `limit`
characters keeps its first and last parts around a marker line that says how many characters were
left out: `... [1234 characters omitted] ...`.
"""

from __future__ import annotations

from daj.engines.base import Chat

# The five steps of the paper's protocol with every check it lists (tests/judge/test_prompt.py names them).
STEPS = """Work through these five steps for every candidate:
1. Syntax and completeness: does the code parse? Is every variable and function defined before it \
is used, every needed module imported, every function signature complete, and does every path that \
must return a value have its return statement?
2. Algorithm correctness, line by line: does the approach fit the type of problem? Check each \
operator, loop bound and conditional: off-by-one errors, integer overflow (where the language or a \
library has fixed-width numbers), `<` where `<=` is needed and the reverse, loops that may never \
end. Does it do exactly what the statement requires, no more and no less?
3. Edge cases, by category. Size: empty input, a single element, the largest allowed input. \
Values: zero, negative numbers, the minimum and maximum values, duplicates. Structure: sorted or \
reverse-sorted input, all elements equal, special patterns. Problem-specific: for graphs, \
disconnected parts, cycles and self-loops; for strings, the empty string, one character, special \
characters; for trees, a single node and a degenerate (line-shaped) tree; for intervals, overlapping, \
nested and touching intervals.
4. Input and output format: is the input parsed exactly as specified? Is the output printed or \
returned in the exact format, with the right spacing and newlines, floats at the required precision, \
and items in the required order?
5. Runtime safety and complexity: can it divide by zero, index out of range, loop forever or \
overflow the stack through deep recursion? Do its time and space complexity fit the constraints?"""

MARKER = "\n... [{n} characters omitted] ...\n"


def truncate_middle(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, keeping its head and tail around a marker.

    (When `limit` is shorter than the marker itself, the marker alone is returned.)
    """
    if len(text) <= limit:
        return text
    widest = MARKER.format(n=len(text))  # the marker is never longer than this one
    room = max(limit - len(widest), 0)
    head = (room + 1) // 2
    tail = room - head
    marker = MARKER.format(n=len(text) - head - tail)
    return text[:head] + marker + (text[len(text) - tail:] if tail else "")


def share_budget(lengths: list[int], budget: int) -> list[int]:
    """Water-filling: per-field limits summing to at most `budget`, short fields kept whole."""
    limits = [0] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    left, remaining = budget, len(lengths)
    for i in order:
        share = left // remaining if remaining else 0
        limits[i] = min(lengths[i], share)
        left -= limits[i]
        remaining -= 1
    return limits


def format_tests(tests: dict) -> str:
    """The public tests of a problem as example tests, formatted by test type ("" when there are none)."""
    public = tests.get("public") or []
    kind = tests.get("type")
    parts = []
    for k, case in enumerate(public, 1):
        if kind == "humaneval":
            parts.append(f"Test {k}: `{case['input']}` should evaluate to `{case['output']}`")
        elif kind == "functional":
            parts.append(f"Test {k}\nArguments (one JSON value per line):\n```\n{case['input']}\n```\n"
                         f"Expected return value:\n```\n{case['output']}\n```")
        else:
            parts.append(f"Test {k}\nInput:\n```\n{case['input']}\n```\nExpected output:\n```\n"
                         f"{case['output']}\n```")
    return "\n\n".join(parts)


def problem_fields(problem: dict) -> tuple[str, str, str]:
    """(statement, starter code, example tests) of a problem, untruncated."""
    statement = problem.get("statement") or problem.get("prompt") or ""
    return statement, problem.get("starter_code") or "", format_tests(problem.get("tests") or {})


def build_messages(problem: dict, codes: list[str], max_chars: int) -> Chat:
    """The judge chat for `problem` and the candidate programs `codes` (shown as 1..len(codes))."""
    if len(codes) < 2:
        raise ValueError("the judge compares two or more candidates")
    fields = [*problem_fields(problem), *codes]
    limits = share_budget([len(f) for f in fields], max_chars)
    statement, starter, tests, *codes = [truncate_middle(f, lim) for f, lim in zip(fields, limits, strict=True)]
    k = len(codes)

    lines = [f"You will review {k} candidate Python solutions to the programming problem below and select "
             "the one most likely to pass all tests. Be skeptical and rigorous: assume a candidate is "
             "wrong until your review shows it is right.",
             "",
             "## Problem",
             f"Title: {problem.get('title') or '(untitled)'}",
             f"Platform: {problem.get('platform') or 'unknown'}",
             f"Difficulty: {problem.get('difficulty') or 'unknown'}",
             "",
             statement,
             "",
             "## Starter code",
             f"```python\n{starter}\n```" if starter else "(none: the problem gives no starter code)",
             "",
             "## Example tests",
             tests or "(none: the problem gives no example tests)",
             "",
             "Hidden tests also decide correctness. They are not shown, and they are written to catch the "
             "edge cases and large inputs that the examples miss: passing the examples is not enough.",
             "",
             "## Candidates",
             ""]
    for i, code in enumerate(codes, 1):
        lines += [f"## Candidate {i}", f"```python\n{code}\n```", ""]
    lines += ["## Review", STEPS, "",
              "Then compare the candidates and select the solution most likely to pass all tests, hidden "
              f"ones included. End your answer with its number (1 to {k}) in exactly this form:",
              "<selection>INDEX</selection>"]
    return [{"role": "user", "content": "\n".join(lines)}]


def render_prompt(tokenizer, messages: Chat) -> str:
    """The chat as prompt text, rendered by the judge tokenizer's own chat template."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

"""The judge prompt: a five-step review protocol over two or more candidate programs.

The chat has a system message and one user message holding the problem (title, platform,
difficulty, statement, starter code, public tests), the numbered candidates, the five review steps,
a warning that hidden tests exist, and the required answer format `<selection>INDEX</selection>`.

Truncation (judge.max_prompt_chars): the variable fields (statement, starter code, public tests and
each candidate's code) share a budget of `max_chars` characters; the fixed template text is not
counted. Fields that fit in an equal share stay whole, and the budget they leave is shared among the
longer ones ("water-filling"), so every candidate gets the same room. A field cut to `limit`
characters keeps its first and last parts around a marker line that says how many characters were
left out: `... [1234 characters omitted] ...`.
"""

from __future__ import annotations

from daj.engines.base import Chat

SYSTEM = ("You are a careful reviewer of competitive-programming solutions. You read code closely, "
          "reason about it step by step, and commit to one answer.")

STEPS = """Review each candidate with these five steps, in this order:
1. Syntax and completeness: does the program parse, define everything it uses, and read its input or \
implement the required function the way the problem asks?
2. Algorithm correctness, line by line: is the idea right? Look for off-by-one errors, wrong operators \
or comparisons, and wrong loop bounds.
3. Edge cases, by category: size (the smallest and largest inputs), values (zero, negatives, \
duplicates, extremes), structure (empty, single element, already sorted, all equal), and cases \
particular to this problem.
4. Input and output format: is the input parsed exactly as given, and is the answer printed or \
returned exactly as required?
5. Runtime safety and complexity: can it raise, recurse too deeply or overflow memory, and does its \
time complexity fit the constraints?"""

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


def _format_tests(tests: dict) -> str:
    public = tests.get("public") or []
    if not public:
        return "(no public tests are given)"
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


def build_messages(problem: dict, codes: list[str], max_chars: int) -> Chat:
    """The judge chat for `problem` and the candidate programs `codes` (shown as 1..len(codes))."""
    if len(codes) < 2:
        raise ValueError("the judge compares two or more candidates")
    statement = problem.get("statement") or problem.get("prompt") or ""
    starter = problem.get("starter_code") or ""
    tests = _format_tests(problem.get("tests") or {})
    fields = [statement, starter, tests, *codes]
    limits = share_budget([len(f) for f in fields], max_chars)
    statement, starter, tests, *codes = [truncate_middle(f, lim) for f, lim in zip(fields, limits, strict=True)]
    k = len(codes)

    lines = [f"Below are a programming problem and {k} candidate Python solutions. Decide which candidate "
             "is most likely to be fully correct.",
             "",
             "## Problem",
             f"Title: {problem.get('title') or '(untitled)'}",
             f"Platform: {problem.get('platform') or 'unknown'}",
             f"Difficulty: {problem.get('difficulty') or 'unknown'}",
             "",
             "### Statement",
             statement,
             ""]
    if starter:
        lines += ["### Starter code", f"```python\n{starter}\n```", ""]
    lines += ["### Public tests", tests, "",
              "Warning: the public tests are only examples. Hidden tests also decide correctness; they "
              "cover edge cases and the largest inputs, so passing the examples is not enough.", ""]
    for i, code in enumerate(codes, 1):
        lines += [f"## Candidate {i}", f"```python\n{code}\n```", ""]
    lines += ["## Your task", STEPS, "",
              "After the review, compare the candidates and pick the one most likely to pass every test, "
              f"hidden ones included. Finish your answer with the number of that candidate (1 to {k}) in "
              "exactly this form:",
              "<selection>INDEX</selection>"]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def render_prompt(tokenizer, messages: Chat) -> str:
    """The chat as prompt text, rendered by the judge tokenizer's own chat template."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

"""Policy prompts: each benchmark's own convention, as a chat.

  lcb        the problem's `prompt` (the statement with the starter code or the stdin note, built by
             daj.data.lcb.lcb_prompt)
  bcb        the instruct prompt (the problem's `prompt`)
  humaneval  complete the function whose signature and docstring are given
The wording of the system message and the HumanEval request is ours.
"""

from __future__ import annotations

from daj.engines.base import Chat
from daj.errors import DajError

SYSTEM = ("You are an expert Python programmer. You write correct, efficient programs and answer with "
          "the complete program in a single ```python code block.")
HUMANEVAL_REQUEST = ("Complete the following Python function. Return the whole function (signature, "
                     "docstring optional, and body) with any imports it needs, in one ```python code block.")


def policy_prompt(problem: dict) -> Chat:
    """The chat a policy model is sampled with for one problem."""
    bench = problem.get("benchmark")
    if bench == "humaneval":
        user = f"{HUMANEVAL_REQUEST}\n\n```python\n{problem['prompt'].rstrip()}\n```\n"
    elif bench in ("lcb", "bcb"):
        user = problem["prompt"]
    else:
        raise DajError(f"no policy prompt convention for benchmark {bench!r}", field="benchmark")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

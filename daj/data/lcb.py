"""LiveCodeBench problems: parse `code_generation_lite` rows, from a local snapshot or the hub.

A row (all values strings) has question_title, question_content, platform, question_id, contest_id,
contest_date (ISO), starter_code, difficulty, public_test_cases (JSON list of {input, output,
testtype}), private_test_cases (a JSON string, or base64(zlib(pickle(JSON string))) the official
way) and metadata (JSON, `func_name` for functional problems).

The hub dataset `livecodebench/code_generation_lite` is a loading-script repository whose data
files are test.jsonl, test2.jsonl, ..., test6.jsonl: `release_vN` is the first N files, `vN` the
N-th file alone, `vA_vB` files A..B, `release_latest` all of them.
"""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from daj.data.schema import DIFFICULTIES
from daj.errors import DajError
from daj.io import iter_jsonl

HUB_REPO = "livecodebench/code_generation_lite"
HUB_FILES = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")
ROW_FIELDS = ("question_title", "question_content", "platform", "question_id", "contest_date",
              "starter_code", "difficulty", "public_test_cases", "private_test_cases", "metadata")

# The LCB prompt convention: the statement, then either the starter code to complete or a note
# that the program reads stdin and writes stdout (wording is ours).
_STARTER_NOTE = ("Complete the starter code below to solve the problem. "
                 "Put your whole solution in one Python code block.")
_STDIN_NOTE = ("Write a Python program that reads the input from standard input, solves the problem "
               "and writes the answer to standard output (do not hard-code the sample inputs). "
               "Put your whole solution in one Python code block.")


def lcb_prompt(content: str, starter_code: str) -> str:
    """The policy prompt for one LCB problem: statement plus starter code or the stdin note."""
    prompt = f"### Question:\n{content}\n\n"
    if starter_code:
        prompt += f"### Format: {_STARTER_NOTE}\n```python\n{starter_code}\n```\n\n"
    else:
        prompt += f"### Format: {_STDIN_NOTE}\n```python\n# YOUR CODE HERE\n```\n\n"
    return prompt + "### Answer: (use the format above, inside backticks)\n\n"


def decode_private_tests(value: str) -> list:
    """Decode `private_test_cases`: a plain JSON string, or base64 -> zlib -> pickle -> JSON string."""
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        pass
    raw = pickle.loads(zlib.decompress(base64.b64decode(value.encode("utf-8"))))  # noqa: S301 - LCB's own encoding
    return json.loads(raw) if isinstance(raw, str | bytes) else raw


def _cases(value, *, kind: str, where: dict) -> list[dict]:
    if not isinstance(value, list):
        raise DajError(f"expected a list of tests, got {type(value).__name__}", **where)
    out = []
    for i, case in enumerate(value):
        if not isinstance(case, dict) or "input" not in case or "output" not in case:
            raise DajError(f"{kind} test {i} lacks 'input'/'output'", **where)
        out.append({"input": str(case["input"]), "output": str(case["output"])})
    return out


def parse_lcb_row(row: dict, *, path: str | None = None, line: int | None = None) -> dict:
    """One `code_generation_lite` row -> one problem record (see daj.data.schema)."""
    for key in ROW_FIELDS:
        if key not in row or row[key] is None and key not in ("starter_code",):
            raise DajError("missing required field", path=path, line=line, field=key)

    def where(field: str) -> dict:
        return {"path": path, "line": line, "field": field}

    qid = str(row["question_id"])
    platform = str(row["platform"]).strip().lower()
    difficulty = str(row["difficulty"]).strip().lower()
    if difficulty not in DIFFICULTIES:
        raise DajError(f"unknown difficulty {row['difficulty']!r}", **where("difficulty"))
    date = str(row["contest_date"])[:10]
    if len(date) != 10 or date[4] != "-" or date[7] != "-" or not (date[:4] + date[5:7] + date[8:]).isdigit():
        raise DajError(f"expected an ISO date, got {row['contest_date']!r}", **where("contest_date"))

    try:
        public_raw = row["public_test_cases"]
        public_raw = json.loads(public_raw) if isinstance(public_raw, str) else public_raw
    except json.JSONDecodeError as e:
        raise DajError(f"invalid JSON ({e.msg})", **where("public_test_cases")) from None
    try:
        private_raw = row["private_test_cases"]
        private_raw = decode_private_tests(private_raw) if isinstance(private_raw, str) else private_raw
    except Exception as e:  # any decoding failure (base64, zlib, pickle, JSON) is bad input
        raise DajError(f"cannot decode ({type(e).__name__}: {e})", **where("private_test_cases")) from None
    try:
        metadata = row["metadata"]
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    except json.JSONDecodeError as e:
        raise DajError(f"invalid JSON ({e.msg})", **where("metadata")) from None
    if not isinstance(metadata, dict):
        raise DajError("expected a JSON object", **where("metadata"))

    public = _cases(public_raw, kind="public", where=where("public_test_cases"))
    private = _cases(private_raw, kind="private", where=where("private_test_cases"))
    types = {c.get("testtype") for c in [*public_raw, *private_raw] if isinstance(c, dict)} - {None}
    func_name = metadata.get("func_name") or None
    functional = bool(func_name) or types == {"functional"}
    if functional and not func_name:
        raise DajError("functional tests need metadata.func_name", **where("metadata"))
    starter = row.get("starter_code") or ""
    return {
        "id": f"lcb/{qid}",
        "benchmark": "lcb",
        "title": str(row["question_title"]),
        "prompt": lcb_prompt(str(row["question_content"]), starter),
        "starter_code": starter,
        "platform": platform,
        "difficulty": difficulty,
        "release_date": date,
        "category": None,
        "reference": None,
        "statement": str(row["question_content"]),
        "contest_id": row.get("contest_id"),
        "tests": {
            "type": "functional" if functional else "stdin",
            "public": public,
            "private": private,
            "func_name": func_name if functional else None,
            "entry_point": None,
            "code": None,
        },
    }


def parse_lcb_files(files: Iterable[Path]) -> list[dict]:
    """Parse every row of the given JSON Lines files; duplicate question ids are an error."""
    problems: list[dict] = []
    seen: dict[str, str] = {}
    for path in files:
        for lineno, row in iter_jsonl(path):
            problem = parse_lcb_row(row, path=str(path), line=lineno)
            if problem["id"] in seen:
                raise DajError(f"duplicate question_id (first in {seen[problem['id']]})",
                               path=str(path), line=lineno, field="question_id")
            seen[problem["id"]] = f"{path}"
            problems.append(problem)
    return problems


def snapshot_files(directory: str | Path) -> list[Path]:
    """The row files of a local snapshot: *.jsonl and *.jsonl.gz, in name order (test, test2, ...)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DajError("LCB snapshot directory not found", path=str(directory))
    files = sorted([*directory.glob("*.jsonl"), *directory.glob("*.jsonl.gz")],
                   key=lambda p: (len(p.name.split(".")[0]), p.name))
    if not files:
        raise DajError("no *.jsonl or *.jsonl.gz files in the LCB snapshot directory", path=str(directory))
    return files


def load_lcb_snapshot(directory: str | Path) -> list[dict]:
    """All problems of a local snapshot directory holding `code_generation_lite` row files."""
    return parse_lcb_files(snapshot_files(directory))


def release_files(release: str, *, params_path: str = "params.yaml") -> list[str]:
    """The hub data files of an LCB release tag (release_vN, release_latest, vN, vA_vB)."""
    n = len(HUB_FILES)
    tag = str(release)
    try:
        if tag == "release_latest":
            return list(HUB_FILES)
        if tag.startswith("release_v"):
            k = int(tag.removeprefix("release_v"))
            if 1 <= k <= n:
                return list(HUB_FILES[:k])
        elif tag.startswith("v") and "_" in tag:
            a, b = (int(p.removeprefix("v")) for p in tag.split("_"))
            if 1 <= a <= b <= n:
                return list(HUB_FILES[a - 1:b])
        elif tag.startswith("v"):
            k = int(tag.removeprefix("v"))
            if 1 <= k <= n:
                return [HUB_FILES[k - 1]]
    except ValueError:
        pass
    raise DajError(f"unknown LCB release {tag!r}; expected release_v1..release_v{n}, release_latest, "
                   f"v1..v{n} or vA_vB", path=params_path, field="data.lcb_release")


def _hub_download(repo_id: str, filename: str) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id=repo_id, filename=filename, repo_type="dataset")


def load_lcb_hub(release: str, *, download: Callable[[str, str], str] | None = None,
                 params_path: str = "params.yaml") -> list[dict]:
    """Download the release's files from the hub (cached by huggingface_hub) and parse them."""
    download = download or _hub_download
    files = []
    for name in release_files(release, params_path=params_path):
        try:
            files.append(Path(download(HUB_REPO, name)))
        except DajError:
            raise
        except Exception as e:  # network, auth or missing file: one clear message
            raise DajError(f"cannot download {HUB_REPO}/{name} from the hub: {e}",
                           path=params_path, field="data.source") from None
    return parse_lcb_files(files)

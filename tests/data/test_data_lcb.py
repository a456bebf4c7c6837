"""LiveCodeBench rows: official private-test decoding, the hub path (download monkeypatched), bad rows,
and the real snapshots in shared/data."""

from __future__ import annotations

import base64
import gzip
import json
import pickle
import zlib
from pathlib import Path

import pytest

from daj.data import lcb
from daj.errors import DajError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def encode_official(tests: list[dict]) -> str:
    """LCB's encoding of private_test_cases: JSON string -> pickle -> zlib -> base64."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode("ascii")


def make_row(qid: str = "abc400_a", *, platform: str = "AtCoder", date: str = "2024-08-01T00:00:00",
             functional: bool = False, private: list[dict] | None = None, plain_private: bool = False) -> dict:
    kind = "functional" if functional else "stdin"
    public = [{"input": "[1, 2]\n3" if functional else "1 2\n", "output": "6" if functional else "3\n",
               "testtype": kind}]
    private = private if private is not None else [{"input": "5 6\n", "output": "11\n", "testtype": kind}]
    return {
        "question_title": f"title {qid}",
        "question_content": "Add the numbers.",
        "platform": platform,
        "question_id": qid,
        "contest_id": "abc400",
        "contest_date": date,
        "starter_code": "class Solution:\n    def add(self, nums: List[int], k: int) -> int:\n        " if functional else "",
        "difficulty": "easy",
        "public_test_cases": json.dumps(public),
        "private_test_cases": json.dumps(private) if plain_private else encode_official(private),
        "metadata": json.dumps({"func_name": "add"} if functional else {}),
    }


def write_rows(path: Path, rows: list[dict], *, gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_stdin_row_with_official_private_encoding():
    hidden = [{"input": "5 6\n", "output": "11\n", "testtype": "stdin"},
              {"input": "0 0\n", "output": "0\n", "testtype": "stdin"}]
    p = lcb.parse_lcb_row(make_row(private=hidden))
    assert p["id"] == "lcb/abc400_a" and p["benchmark"] == "lcb"
    assert p["platform"] == "atcoder" and p["difficulty"] == "easy" and p["release_date"] == "2024-08-01"
    assert p["tests"]["type"] == "stdin" and p["tests"]["func_name"] is None
    assert p["tests"]["public"] == [{"input": "1 2\n", "output": "3\n"}]
    assert p["tests"]["private"] == [{"input": "5 6\n", "output": "11\n"}, {"input": "0 0\n", "output": "0\n"}]
    assert p["reference"] is None and p["starter_code"] == ""
    assert "Add the numbers." in p["prompt"] and "standard input" in p["prompt"]


def test_functional_row_and_plain_json_private():
    hidden = [{"input": "[4]\n1", "output": "5", "testtype": "functional"}]
    p = lcb.parse_lcb_row(make_row("3001", platform="LeetCode", functional=True, private=hidden,
                                   plain_private=True))
    assert p["id"] == "lcb/3001" and p["platform"] == "leetcode"
    assert p["tests"]["type"] == "functional" and p["tests"]["func_name"] == "add"
    assert p["tests"]["private"] == [{"input": "[4]\n1", "output": "5"}]
    assert p["starter_code"].startswith("class Solution") and p["starter_code"] in p["prompt"]


def test_decode_private_tests_both_ways():
    tests = [{"input": "x", "output": "y", "testtype": "stdin"}]
    assert lcb.decode_private_tests(encode_official(tests)) == tests
    assert lcb.decode_private_tests(json.dumps(tests)) == tests


@pytest.mark.parametrize(("field", "value", "message"), [
    ("private_test_cases", "not base64 at all!", "cannot decode"),
    ("public_test_cases", "[{", "invalid JSON"),
    ("contest_date", "yesterday", "ISO date"),
    ("difficulty", "impossible", "unknown difficulty"),
    ("metadata", "[1]", "JSON object"),
])
def test_bad_field_names_file_line_and_field(tmp_path, field, value, message):
    rows = [make_row("a"), {**make_row("b"), field: value}]
    path = write_rows(tmp_path / "test.jsonl", rows)
    with pytest.raises(DajError) as err:
        lcb.load_lcb_snapshot(tmp_path)
    assert err.value.path == str(path) and err.value.line == 2 and err.value.field == field
    assert message in str(err.value)


def test_missing_field_and_malformed_line(tmp_path):
    row = make_row("a")
    del row["question_id"]
    write_rows(tmp_path / "test.jsonl", [row])
    with pytest.raises(DajError) as err:
        lcb.load_lcb_snapshot(tmp_path)
    assert (err.value.line, err.value.field) == (1, "question_id")
    (tmp_path / "test.jsonl").write_text(json.dumps(make_row("a")) + "\n{not json\n")
    with pytest.raises(DajError, match=r"test\.jsonl:2: malformed JSON"):
        lcb.load_lcb_snapshot(tmp_path)


def test_functional_tests_without_func_name_is_an_error():
    row = make_row("3001", functional=True)
    row["metadata"] = "{}"
    with pytest.raises(DajError, match="func_name"):
        lcb.parse_lcb_row(row)


def test_snapshot_reads_files_in_release_order_and_rejects_duplicates(tmp_path):
    write_rows(tmp_path / "test.jsonl", [make_row("a")])
    write_rows(tmp_path / "test2.jsonl.gz", [make_row("b")], gz=True)
    write_rows(tmp_path / "test10.jsonl", [make_row("c")])
    assert [p["id"] for p in lcb.load_lcb_snapshot(tmp_path)] == ["lcb/a", "lcb/b", "lcb/c"]
    write_rows(tmp_path / "test3.jsonl", [make_row("a")])
    with pytest.raises(DajError, match="duplicate question_id"):
        lcb.load_lcb_snapshot(tmp_path)


def test_empty_or_missing_snapshot_directory(tmp_path):
    with pytest.raises(DajError, match="no \\*.jsonl"):
        lcb.load_lcb_snapshot(tmp_path)
    with pytest.raises(DajError, match="not found"):
        lcb.load_lcb_snapshot(tmp_path / "nope")


def test_release_files():
    assert lcb.release_files("release_v1") == ["test.jsonl"]
    assert lcb.release_files("release_v6") == list(lcb.HUB_FILES)
    assert lcb.release_files("release_latest") == list(lcb.HUB_FILES)
    assert lcb.release_files("v3") == ["test3.jsonl"]
    assert lcb.release_files("v2_v4") == ["test2.jsonl", "test3.jsonl", "test4.jsonl"]
    for bad in ("release_v7", "v0", "v4_v2", "latest"):
        with pytest.raises(DajError) as err:
            lcb.release_files(bad, params_path="p.yaml")
        assert err.value.field == "data.lcb_release" and err.value.path == "p.yaml"


def test_hub_path_downloads_release_files(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    hub.mkdir()
    write_rows(hub / "test.jsonl", [make_row("a", date="2024-01-02T00:00:00")])
    hidden = [{"input": "[9]\n1", "output": "10", "testtype": "functional"}]
    write_rows(hub / "test2.jsonl", [make_row("3001", platform="LeetCode", functional=True, private=hidden)])
    write_rows(hub / "test3.jsonl", [make_row("z")])
    calls = []

    def fake_download(repo_id: str, filename: str) -> str:
        calls.append((repo_id, filename))
        return str(hub / filename)

    monkeypatch.setattr(lcb, "_hub_download", fake_download)
    problems = lcb.load_lcb_hub("release_v2")
    assert calls == [(lcb.HUB_REPO, "test.jsonl"), (lcb.HUB_REPO, "test2.jsonl")]
    assert [p["id"] for p in problems] == ["lcb/a", "lcb/3001"]
    assert problems[1]["tests"]["private"] == [{"input": "[9]\n1", "output": "10"}]

    def failing(repo_id: str, filename: str) -> str:
        raise OSError("no network")

    monkeypatch.setattr(lcb, "_hub_download", failing)
    with pytest.raises(DajError, match="cannot download.*no network") as err:
        lcb.load_lcb_hub("v1")
    assert err.value.field == "data.source"


@pytest.mark.skipif(not (SHARED / "lcb").is_dir(), reason="shared/data not present")
def test_real_snapshots():
    public = lcb.load_lcb_snapshot(SHARED / "lcb" / "code_generation_lite")
    assert len(public) == 880
    assert {p["platform"] for p in public} == {"atcoder", "leetcode", "codeforces"}
    assert sum(p["platform"] == "codeforces" for p in public) == 9
    assert min(p["release_date"] for p in public) == "2023-05-07"
    assert max(p["release_date"] for p in public) == "2025-01-04"
    assert all(p["tests"]["private"] == [] for p in public)
    assert sum(len(p["tests"]["public"]) for p in public) == 1357 + 934 + 9
    assert all(p["tests"]["type"] == ("functional" if p["platform"] == "leetcode" else "stdin") for p in public)
    hidden = lcb.load_lcb_snapshot(SHARED / "lcb" / "code_generation_lite_private184")
    assert len(hidden) == 184 and sum(len(p["tests"]["private"]) for p in hidden) == 2417
    by_id = {p["id"]: p for p in public}
    assert all(by_id[p["id"]]["tests"]["public"] == p["tests"]["public"] for p in hidden)

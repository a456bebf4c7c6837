"""Artifacts written by daj.io: they honour the umask like any other file, and any string survives."""

from __future__ import annotations

import os
import stat

import pytest

from daj.io import atomic_dir, read_json, read_jsonl, write_json, write_jsonl


@pytest.fixture()
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                       (0o002, 0o664, 0o775)])
def test_artifacts_honour_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}])
    write_json(tmp_path / "doc.json", {"a": 1})
    with atomic_dir(tmp_path / "out") as d:
        write_jsonl(d / "x.jsonl", [{"b": 2}])
    for name in ("rows.jsonl", "doc.json", "out/x.jsonl"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == file_mode, name
    assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == dir_mode


def test_lone_surrogates_are_escaped_and_read_back(tmp_path):
    rows = [{"error": "ValueError: \ud800 and \udfff", "ok": "é ✓"}]
    write_jsonl(tmp_path / "v.jsonl", rows)
    write_json(tmp_path / "m.json", rows[0])
    assert read_jsonl(tmp_path / "v.jsonl") == rows and read_json(tmp_path / "m.json") == rows[0]
    text = (tmp_path / "v.jsonl").read_bytes().decode("utf-8")  # valid UTF-8 on disk
    assert "\\ud800" in text
    write_jsonl(tmp_path / "plain.jsonl", [{"ok": "é ✓"}])
    assert "é ✓" in (tmp_path / "plain.jsonl").read_text(encoding="utf-8")  # readable text kept as is

"""A persistent cache of judge calls, so that repeating a call costs nothing.

Keyed by a SHA-256 of (prompt messages, model name, decoding settings incl. n and seed, forced
selection on/off, cache format version); the value is the JSON list of responses. Stored in one
SQLite file under judge.cache_dir (safe for several processes).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

CACHE_VERSION = 1


def cache_key(**parts) -> str:
    """A stable hash of JSON-serialisable parts."""
    blob = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """key -> JSON value, in `directory`/judge.sqlite. `None` directory keeps it in memory."""

    def __init__(self, directory: str | Path | None):
        if directory is None:
            self._db = sqlite3.connect(":memory:")
        else:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(Path(directory) / "judge.sqlite"), timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str):
        row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)",
                         (key, json.dumps(value, ensure_ascii=False)))
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def fingerprint(ref: str | None, chunk: int = 1 << 20, whole_below: int = 256 << 20) -> str | None:
    """A short content digest of a local model or adapter (file or directory), else None.

    The judge cache is keyed by the engine name, which holds paths; a checkpoint rebuilt or retrained
    at the same path must not be answered from the old one's cache. Files up to `whole_below` bytes are
    hashed whole; larger ones (big weight shards) by name, size and their first and last `chunk` bytes.
    """
    if not ref:
        return None
    from daj.errors import DajError
    from daj.models.loading import resolve_model_ref

    try:
        mref = resolve_model_ref(ref)
    except DajError:
        return None
    path = Path(mref.path) / mref.gguf_file if mref.gguf_file else Path(mref.path)
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.relative_to(path) if f != path else f.name}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size <= whole_below:
                digest.update(fh.read())
            else:
                digest.update(fh.read(chunk))
                fh.seek(size - chunk)
                digest.update(fh.read(chunk))
    return digest.hexdigest()[:16]

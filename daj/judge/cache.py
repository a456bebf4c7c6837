"""A persistent cache of judge calls, so that repeating a call costs nothing.

Keyed by a SHA-256 of (prompt messages, model name, decoding settings incl. n and seed, forced
selection on/off, cache format version); the value is the JSON list of responses. Stored in one
SQLite file under judge.cache_dir (safe for several processes).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from daj.hashing import fingerprint as fingerprint  # noqa: F401 - re-export for callers
from daj.hashing import json_digest

CACHE_VERSION = 1


def cache_key(**parts) -> str:
    """A stable hash of JSON-serialisable parts."""
    return json_digest({"v": CACHE_VERSION, **parts})


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

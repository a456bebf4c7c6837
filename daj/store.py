"""One persistent key-value store for every cache of the pipeline (verdicts, judge calls, reference
log-probs): a SQLite file under the cache root, safe for several processes and threads.

    store = Store(".cache/judge", "judge")
    store.put_json(key, value); store.get_json(key)      # JSON values
    store.put_bytes(key, blob); store.get_bytes(key)     # raw values (float arrays)

Keys are content digests (daj.hashing). A value is written in one transaction, so a crash never
leaves half a value behind; an interrupted run simply finds fewer keys.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


class Store:
    """key -> bytes in `directory`/`name`.sqlite; `directory` None keeps it in memory."""

    def __init__(self, directory: str | Path | None, name: str):
        if directory is None:
            target = ":memory:"
        else:
            Path(directory).mkdir(parents=True, exist_ok=True)
            target = str(Path(directory) / f"{name}.sqlite")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(target, timeout=60, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        self._db.commit()

    def get_bytes(self, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_bytes(self, key: str, value: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))
            self._db.commit()

    def get_json(self, key: str) -> Any:
        blob = self.get_bytes(key)
        if blob is None:
            return None
        try:
            return json.loads(blob.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):  # a foreign value is a miss
            return None

    def put_json(self, key: str, value: Any) -> None:
        # ASCII JSON: any string (a lone surrogate too) round-trips
        self.put_bytes(key, json.dumps(value).encode("ascii"))

    def put_json_many(self, items: list[tuple[str, Any]]) -> None:
        """put_json of several values in one transaction (one commit, one disk sync)."""
        rows = [(key, json.dumps(value).encode("ascii")) for key, value in items]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", rows)
            self._db.commit()

    def json_values(self) -> list[Any]:
        """Every JSON value held (inspection and tests; order unspecified)."""
        with self._lock:
            rows = self._db.execute("SELECT value FROM kv").fetchall()
        return [json.loads(bytes(r[0]).decode("ascii")) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM kv").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""A persistent cache of judge calls, so that repeating a call costs nothing.

Keyed by a SHA-256 of (prompt messages, model name, decoding settings incl. n and seed, forced
selection on/off, cache format version); the value is the JSON list of responses. Stored in one
SQLite file under caches.judge (daj.store: safe for several processes and threads).
"""

from __future__ import annotations

from pathlib import Path

from daj.hashing import json_digest
from daj.store import Store

# 2: hf answers independent of the batch, forced draws seeded without the engine's name
CACHE_VERSION = 2


def cache_key(**parts) -> str:
    """A stable hash of JSON-serialisable parts."""
    return json_digest({"v": CACHE_VERSION, **parts})


class JudgeCache(Store):
    """key -> JSON list of responses, in `directory`/judge.sqlite (the pipeline's one store,
    daj.store). `None` directory keeps it in memory."""

    def __init__(self, directory: str | Path | None):
        super().__init__(directory, "judge")

    get = Store.get_json
    put = Store.put_json
    put_many = Store.put_json_many

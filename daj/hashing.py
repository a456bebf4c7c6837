"""Stable digests and seeds: one place for every content key and derived seed in the pipeline.

Everything here is stable across processes and machines (unlike `hash()`), so cache keys and seeds
derived from them reproduce a run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_hex(data: str | bytes) -> str:
    """The hex SHA-256 of a string (UTF-8) or bytes."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def json_digest(obj: Any, length: int | None = None) -> str:
    """The hex SHA-256 of `obj` as canonical JSON (sorted keys, non-ASCII kept), cut to `length`."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False)
    digest = sha256_hex(blob)
    return digest[:length] if length else digest


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from strings and ints (joined by the unit separator)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def prompt_seed(seed: int, prompt: Any, prefix: str | None = None) -> int:
    """A 31-bit seed for one prompt (a chat), derived from the base seed and the prompt's content:
    a prompt's samples do not depend on the batch it is in."""
    blob = json.dumps([seed, prompt, prefix or ""], sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def row_seed(seed: int, row: int) -> int:
    """The seed of sample `row` of a prompt whose seed is `seed`."""
    return stable_seed("row", seed, row)


def file_digest(path: str | Path, length: int = 16) -> str:
    """The hex SHA-256 of a file's bytes, cut to `length`."""
    return sha256_hex(Path(path).read_bytes())[:length]


def checkpoint_digest(ref: str | None, chunk: int = 1 << 20, whole_below: int = 256 << 20) -> str | None:
    """A short content digest of a local model or adapter (file or directory), else None.

    Caches keyed by a model's path must not answer for a checkpoint rebuilt or retrained at the same
    path. Files up to `whole_below` bytes are hashed whole; larger ones (big weight shards) by name,
    size and their first and last `chunk` bytes.
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

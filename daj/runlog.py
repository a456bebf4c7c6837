"""How a run went (wall times, memory, cache hits), kept apart from its results.

Results go to the DVC metrics files, which must be equal for two identical runs so that
`dvc metrics diff` and `dvc exp show` show what changed in the results. Timings and cache hits differ
from run to run, so they go to `logs/<stage>.json` instead: not a DVC output, not in git.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daj.io import atomic_open

LOG_DIR = Path("logs")


def record(stage: str, values: dict[str, Any], log_dir: str | Path | None = None) -> Path:
    """Merge `values` into logs/<stage>.json (atomically) and return its path."""
    path = Path(log_dir or LOG_DIR) / f"{stage}.json"
    current: dict[str, Any] = {}
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    current.update(values)
    with atomic_open(path) as fh:
        json.dump(current, fh, indent=2, sort_keys=True)
    return path


RUN_FIELDS = ("model_calls", "cache_hits", "seconds", "seconds_per_step", "peak_rss_mb", "peak_gpu_mb")


def split_run_fields(obj: Any, fields: tuple[str, ...] = RUN_FIELDS) -> tuple[Any, Any]:
    """(results, run): `obj` without the keys that describe how this run went (at any depth), and those
    keys alone in the same nesting. A warm cache turns model calls into cache hits; the results, the
    responses and their tokens, stay the same."""
    if isinstance(obj, dict):
        results, run = {}, {}
        for key, value in obj.items():
            if key in fields:
                run[key] = value
                continue
            kept, taken = split_run_fields(value, fields)
            results[key] = kept
            if taken not in (None, {}, []):
                run[key] = taken
        return results, run
    if isinstance(obj, list):
        pairs = [split_run_fields(v, fields) for v in obj]
        taken = [t for _, t in pairs]
        return [r for r, _ in pairs], (taken if any(t not in (None, {}, []) for t in taken) else None)
    return obj, None

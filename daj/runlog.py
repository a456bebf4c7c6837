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

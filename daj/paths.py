"""Where the project finds things outside its own tree.

The real benchmark data lives in a `shared/` folder beside the repository (read-only; see its
PROVENANCE.md). `DAJ_SHARED` overrides where that folder is.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared folder: $DAJ_SHARED, else `../shared` next to the repository."""
    env = os.environ.get("DAJ_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def shared_data(*parts: str) -> Path:
    """A path under the shared data folder, e.g. shared_data("lcb", "submissions")."""
    return shared_dir().joinpath("data", *parts)

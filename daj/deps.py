"""Checks for dependencies that pip cannot pin for us."""

from __future__ import annotations

from importlib import metadata

from daj.errors import DajError

BETTY_VERSION = "0.2.1"
BETTY_INSTALL = f"pip install --no-deps --ignore-requires-python betty-ml=={BETTY_VERSION}"


def require_betty():
    """Import betty-ml and check it is 0.2.1 (a bare `pip install betty-ml` on 3.11 gives 0.1.1)."""
    try:
        version = metadata.version("betty-ml")
    except metadata.PackageNotFoundError:
        raise DajError(f"betty-ml is not installed; run `make setup` or `{BETTY_INSTALL}`") from None
    if version != BETTY_VERSION:
        raise DajError(f"betty-ml {version} is installed but {BETTY_VERSION} is required; run `{BETTY_INSTALL}`")
    import betty

    return betty

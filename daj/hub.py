"""Is the Hugging Face hub within reach? Asked once, in seconds, before a stage needs it.

Without this, an offline machine learns it from the hub client's retries (20 s to a minute) and a
message that names no params key.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from urllib.parse import urlparse

from daj.errors import DajError

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_offline() -> bool:
    """The hub is switched off by the environment (HF_HUB_OFFLINE and its siblings)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARS)


@lru_cache(maxsize=1)
def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached (switched off, no DNS, no route, ...), or None when it answers a
    TCP connection to its endpoint ($HF_ENDPOINT or https://huggingface.co) within `timeout` seconds."""
    if hub_offline():
        return "the environment switches it off (HF_HUB_OFFLINE)"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{host}:{port} does not answer ({e.strerror or e})"


def require_hub(what: str, *, path: str | None, field: str, instead: str) -> None:
    """Raise a DajError at once when the hub is out of reach; `instead` says what to set meanwhile."""
    why = hub_unreachable()
    if why is not None:
        raise DajError(f"{what} needs the Hugging Face hub, which is out of reach: {why}; {instead}",
                       path=path, field=field)

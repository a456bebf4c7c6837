"""Shared entry point for stage scripts: clean error output and a non-zero exit on bad input."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from daj.errors import DajError
from daj.params import Params, load_params

TRAINED_ADAPTER = "models/judge"  # written by the train stage; bon and pairwise load it when present


def run_stage(name: str, body: Callable[[Params], None]) -> None:
    """Load params, run `body`, print DajError as one line and exit 2."""
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s")
    start = time.perf_counter()
    try:
        body(load_params())
    except DajError as e:
        print(f"error in stage '{name}': {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"stage '{name}' interrupted", file=sys.stderr)
        sys.exit(130)
    logging.getLogger().info("done in %.1f s", time.perf_counter() - start)


def positive_int(params: Params, key: str, allow_none: bool = False) -> int | None:
    value = params.get_path(key)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DajError(f"expected a positive integer{' or null' if allow_none else ''}, got {value!r}",
                       path=params.path, field=key)
    return value


def policy_list(params: Params, key: str) -> list[str]:
    value = params.get_path(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise DajError(f"expected a non-empty list of policy names, got {value!r}", path=params.path, field=key)
    return value


def judge_adapter(params: Params) -> str | None:
    """models/judge when train has written it, else judge.adapter."""
    trained = Path(TRAINED_ADAPTER)
    if trained.is_dir():
        if not (trained / "adapter_config.json").is_file():
            raise DajError("not a PEFT adapter (no adapter_config.json)", path=str(trained))
        return str(trained)
    return params.get_path("judge.adapter", None)



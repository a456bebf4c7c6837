"""Shared entry point for stage scripts: clean error output and a non-zero exit on bad input."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from daj.errors import DajError
from daj.params import Params, load_params


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

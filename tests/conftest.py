"""Shared fixtures: the repository's params with overrides, the real data in shared/, the tiny model."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from daj.params import Params, load_params
from daj.paths import REPO, shared_data

SHARED_DATA = shared_data()


def repo_params(**overrides) -> Params:
    """The repo's params.yaml with dotted overrides: repo_params(**{"data.source": "hf"})."""
    params = Params(copy.deepcopy(dict(load_params(REPO / "params.yaml"))))
    params.path = "params.yaml"
    for dotted, value in overrides.items():
        node = params
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return params


@pytest.fixture()
def make_params() -> Callable[..., Params]:
    return repo_params


def require_shared(*parts: str) -> Path:
    """A path under shared/data; the test is skipped where shared/ is absent, except in CI, where the
    data is always laid beside the clone and its absence is a failure."""
    path = shared_data(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared data missing in CI: {path}")
        pytest.skip(f"real data not found at {path} (set DAJ_SHARED)")
    return path


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """The tiny random judge (HumanEval tokenizer, seed 0), built once per session."""
    from _tiny_model import tiny_model_dir

    return tiny_model_dir()

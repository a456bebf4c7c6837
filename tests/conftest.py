"""Shared fixtures: the repository's params with overrides, the real data in shared/, the tiny model."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from daj.config import ParamsConfig
from daj.params import load_config, with_overrides
from daj.paths import REPO, shared_data

SHARED_DATA = shared_data()
# the DVC projects that tests create must not phone home (no network here; CI neither)
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def repo_params(**overrides) -> ParamsConfig:
    """The repo's params.yaml with dotted overrides, validated like the file itself:
    repo_params(**{"data.source": "hf"}). A bad override is the DajError a stage would raise."""
    return with_overrides(load_config(REPO / "params.yaml"), **overrides)


@pytest.fixture()
def make_params() -> Callable[..., ParamsConfig]:
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


@pytest.fixture(scope="session")
def tiny_engine(tiny_model: str):
    """One hf engine on the tiny model (batch_size 2), shared by the session: tests must not change it."""
    from _tiny_model import tiny_engine as shared

    return shared()

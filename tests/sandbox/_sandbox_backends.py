"""The sandbox backends a test can run on: local always; docker where a daemon and the test image are
(skipped otherwise, and a failure with CI=true, so that CI cannot go green without it)."""

from __future__ import annotations

import os

import pytest

from daj.config import ExecuteConfig

BACKENDS = ["local", "docker"]
TEST_IMAGE = os.environ.get("DAJ_DOCKER_TEST_IMAGE", "daj-sandbox-test:latest")


def docker_or_skip(image: str = TEST_IMAGE) -> None:
    """Skip (developer machine) or fail (CI=true) when the live docker tests cannot run."""
    from sandbox.docker_backend import docker_ready

    why = docker_ready(ExecuteConfig(docker_image=image))
    if why is None:
        return
    message = f"docker backend tests need a docker daemon and the image {image}: {why}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {message}. .ci/run installs docker.io, starts dockerd and builds the "
                    "image (sandbox/image/build.sh test); it must not be skipped in CI", pytrace=False)
    pytest.skip(message)


def pool_config(backend: str, **overrides) -> ExecuteConfig:
    """Small limits for fast tests, on `backend` (docker: the test image, or skip)."""
    if backend == "docker":
        docker_or_skip()
    settings = dict(backend=backend, docker_image=TEST_IMAGE, timeout_s=2.0, wall_factor=4.0, workers=1,
                    memory_mb=512, output_mb=8, pids_limit=64, sandbox_memory_mb=2048)
    return ExecuteConfig(**{**settings, **overrides})

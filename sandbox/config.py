"""Sandbox settings, read from the `execute:` section of params.yaml."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent
# Bump when the harness' semantics change: it is part of the verdict cache key.
SEMANTICS_VERSION = "daj-sandbox-3"  # 3: trusted-side comparison (verdicts that cannot be forged)


@dataclass(frozen=True)
class SandboxConfig:
    backend: str = "auto"              # auto / local / docker
    allow_unsandboxed: bool = False    # local only: run without bwrap when it cannot start (warns)
    timeout_s: float = 6.0             # CPU seconds per test (a problem's tests.timeout_s overrides it)
    wall_factor: float = 4.0           # wall-clock backstop = wall_factor x timeout_s
    memory_mb: int = 2048              # RLIMIT_AS per process running candidate code
    unittest_memory_mb: int = 30720    # RLIMIT_AS for BCB unittest candidates (BCB: 30 GiB)
    output_mb: int = 64                # RLIMIT_FSIZE: stdout and files a candidate writes
    pids_limit: int = 128              # cgroup pids.max per sandbox (local) / pids_limit (docker)
    sandbox_memory_mb: int = 4096      # cgroup memory limit per sandbox (local) / mem_limit (docker)
    sandbox_cpus: float = 1.0          # cgroup CPU quota per sandbox in cores (local; 0 = none)
    retries: int = 1                   # fresh-server reruns of a job whose server died or hung
    seccomp: bool = True               # seccomp filter in the sandbox where pyseccomp is installed
    workers: int = 0                   # parallel sandboxes; 0 = number of cores
    cache_dir: str | None = ".cache/verdicts"
    docker_image: str = "daj-sandbox:latest"

    @classmethod
    def from_params(cls, section: dict | None) -> SandboxConfig:
        """Build from params['execute'], ignoring keys that are not sandbox settings."""
        section = dict(section or {})
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in section.items() if k in names})

    def n_workers(self) -> int:
        return self.workers if self.workers and self.workers > 0 else (os.cpu_count() or 1)

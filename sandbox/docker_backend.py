"""Docker backend: the same harness server as the local backend, one container per worker.

The image (`execute.docker_image`, built offline by `make image` / `make image-test`, see docs/docker.md)
holds only an interpreter and libraries; the working tree's `sandbox/` is bind-mounted read-only at
/opt/daj-sandbox when a container starts, so the harness is always the checkout's own. Each container
has no network (network_mode none), a read-only root, a tmpfs /tmp, a private 64 MB /dev/shm (its own
IPC namespace), /dev not writable (root-owned, uid 65534 inside), no capabilities, no new privileges,
and docker's limits: memory (+swap), pids and a CPU quota. The harness runs as pid 1 of the
container's pid namespace (--own-pid-ns), so after every candidate it kills every process left and
wipes /tmp (and /dev/shm): the same clean-state rules as in bwrap. Jobs and results are the harness
protocol's JSON lines over the attached stdin/stdout (docker's multiplexed stream).
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import socket
import struct
import time
from pathlib import Path
from typing import Any

from sandbox.config import HARNESS_DIR, SandboxConfig
from sandbox.local import SANDBOX_ENV, SANDBOX_HARNESS
from sandbox.server import HarnessServer, SandboxStartError

log = logging.getLogger(__name__)
HARNESS_ARGS = ["python", "-s", f"{SANDBOX_HARNESS}/harness.py", "--tmp-root", "/tmp", "--own-pid-ns"]
SHM_MB = 64
API_TIMEOUT_S = 120.0
LABEL = "daj.sandbox"
OWNER_LABEL = "daj.sandbox.owner"  # <hostname>:<pid> of the process that created the container
BUILD_HINT = ("build it offline with `make image` (BigCodeBench image, tagged daj-sandbox:latest) or "
              "`make image-test` (small image, daj-sandbox-test:latest); see docs/docker.md")


def docker_client(timeout: float = 5.0) -> Any | None:
    """A docker client whose daemon answers a ping, else None."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception as e:  # no daemon, no socket, no permission: all mean "not available"
        log.debug("docker unavailable: %s", e)
        return None


def docker_ready(config: SandboxConfig, client: Any | None = None) -> str | None:
    """Why the docker backend cannot run with `config` (no daemon, no image), or None when it can."""
    client = client or docker_client()
    if client is None:
        return "no docker daemon answers"
    try:
        client.images.get(config.docker_image)
    except Exception as e:  # ImageNotFound, or an API error
        return f"docker image {config.docker_image!r} not found ({type(e).__name__}): {BUILD_HINT}"
    return None


def harness_digest(harness_dir: Path = HARNESS_DIR) -> str:
    """sha256 of the harness files the container runs (they are mounted, not baked into the image)."""
    h = hashlib.sha256()
    for name in ("harness.py", "compare.py"):
        h.update(name.encode() + b"\0" + (harness_dir / name).read_bytes() + b"\0")
    return h.hexdigest()


def backend_identity(config: SandboxConfig, client: Any | None = None) -> str:
    """What a docker verdict depends on besides the job: the image's id and the harness' digest.
    Meant for the verdict cache key (see docs/docker.md, "Cache")."""
    client = client or docker_client()
    image_id = "no-image"
    if client is not None:
        try:
            image_id = client.images.get(config.docker_image).id
        except Exception as e:  # a missing image fails later, at start, with BUILD_HINT
            log.debug("no image id: %s", e)
    return f"docker:{image_id}:{harness_digest()[:16]}"


def container_options(config: SandboxConfig, harness_dir: Path = HARNESS_DIR) -> dict:
    """Keyword arguments of client.containers.create for one sandbox container."""
    memory = f"{config.sandbox_memory_mb}m"
    cpus = float(getattr(config, "sandbox_cpus", 1.0) or 1.0)
    return {
        "image": config.docker_image,
        # execute.seccomp false: the harness loads no filter of its own (as the local backend)
        "entrypoint": HARNESS_ARGS if getattr(config, "seccomp", True) else [*HARNESS_ARGS, "--no-seccomp"],
        "command": [],
        "stdin_open": True,
        "tty": False,
        "detach": True,
        # network_mode none: a network namespace with only lo. Not network_disabled, which also
        # leaves /etc/hosts empty, so that "localhost" does not resolve (BCB servers bind to it).
        "network_mode": "none",
        "ipc_mode": "private",
        "shm_size": f"{SHM_MB}m",
        "mem_limit": memory,
        "memswap_limit": memory,
        "pids_limit": config.pids_limit,
        "cpu_period": 100_000,
        "cpu_quota": max(1000, int(cpus * 100_000)),
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,exec,size={max(64, 2 * config.output_mb + 256)}m,mode=1777"},
        "volumes": {str(harness_dir): {"bind": SANDBOX_HARNESS, "mode": "ro"}},
        "user": "65534:65534",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "environment": dict(SANDBOX_ENV),
        "working_dir": "/tmp",
        "labels": {LABEL: "1", OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"},
    }


def ensure_image(client: Any, config: SandboxConfig) -> None:
    """Fail with the build command when the image is missing (a build takes minutes: never implicit)."""
    why = docker_ready(config, client)
    if why:
        raise SandboxStartError(f"execute.backend is docker but {why}")


def remove_stale(client: Any) -> int:
    """Remove sandbox containers left by daj processes of this host that are gone (killed hosts)."""
    removed = 0
    host = socket.gethostname()
    try:
        containers = client.containers.list(all=True, filters={"label": LABEL})
    except Exception as e:  # listing is best effort
        log.debug("listing containers: %s", e)
        return 0
    for c in containers:
        owner_host, _, pid = (c.labels.get(OWNER_LABEL) or "").rpartition(":")
        if owner_host == host and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                c.remove(force=True)
                removed += 1
            except Exception as e:  # removed concurrently
                log.debug("stale container %s: %s", c.id[:12], e)
    return removed


class FrameReader:
    """Demultiplexes docker's attach stream: 8-byte headers (stream, 0, 0, 0, size) then payload."""

    def __init__(self) -> None:
        self.raw = b""
        self.stdout = b""
        self.stderr = b""

    def feed(self, data: bytes) -> None:
        self.raw += data
        while len(self.raw) >= 8:
            stream, size = self.raw[0], struct.unpack(">I", self.raw[4:8])[0]
            if len(self.raw) < 8 + size:
                break
            payload, self.raw = self.raw[8:8 + size], self.raw[8 + size:]
            if stream == 2:
                self.stderr = (self.stderr + payload)[-8192:]
            else:
                self.stdout += payload

    def pop_line(self) -> bytes | None:
        if b"\n" not in self.stdout:
            return None
        line, self.stdout = self.stdout.split(b"\n", 1)
        return line


class DockerChannel:
    """One sandbox container, its attached socket, and line framing over it."""

    def __init__(self, client: Any, config: SandboxConfig):
        try:
            self.container = client.containers.create(**container_options(config))
        except Exception as e:  # image gone, daemon gone or too slow: the backend cannot start
            raise SandboxStartError(f"docker: cannot create a sandbox container: {e}") from e
        try:
            self.socket = self.container.attach_socket(
                params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self.raw = getattr(self.socket, "_sock", self.socket)
            self.frames = FrameReader()
            self.container.start()
        except Exception as e:
            self._remove()
            raise SandboxStartError(f"docker: container did not start: {e}") from e

    def send(self, data: bytes) -> None:
        self.raw.sendall(data)

    def recv_line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while (line := self.frames.pop_line()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self.raw], [], [], remaining)
            if not readable:
                return None
            chunk = self.raw.recv(1 << 16)
            if not chunk:
                return None
            self.frames.feed(chunk)
        return line

    def kill(self) -> None:
        """Kill the container now (safe from another thread): every process in it dies at once."""
        try:
            self.container.kill()
        except Exception as e:  # already stopped or removed
            log.debug("container kill: %s", e)

    def describe_failure(self) -> str:
        try:
            self.container.reload()
            state = self.container.attrs.get("State", {})
            status = f"{state.get('Status')}, exit {state.get('ExitCode')}" + (
                ", OOM-killed" if state.get("OOMKilled") else "")
            logs = self.container.logs(stdout=False, stderr=True)[-2000:].decode("utf-8", "replace")
        except Exception as e:  # the container may already be gone
            status, logs = "gone", str(e)
        stderr = logs or self.frames.stderr.decode(errors="replace")
        return f"container {self.container.id[:12]} ({status}): {stderr}"

    def close(self) -> None:
        try:
            self.raw.close()
        except OSError:
            pass
        self._remove()

    def _remove(self) -> None:
        try:
            self.container.remove(force=True)
        except Exception as e:  # already removed
            log.debug("container removal: %s", e)


_stale_checked = False


def docker_server(config: SandboxConfig, client: Any | None = None) -> HarnessServer:
    """A HarnessServer running in a container; raises SandboxStartError without a daemon or image."""
    global _stale_checked
    # container create/start/remove can take seconds on a loaded machine: not the probe's 5 s
    client = client or docker_client(timeout=API_TIMEOUT_S)
    if client is None:
        raise SandboxStartError("execute.backend is docker but no docker daemon answers "
                                "(start dockerd, or use execute.backend: local)")
    ensure_image(client, config)
    if not _stale_checked:
        _stale_checked = True
        if n := remove_stale(client):
            log.info("removed %d sandbox containers left by daj processes that are gone", n)
    kwargs = {"retries": config.retries} if hasattr(config, "retries") else {}
    server = HarnessServer(lambda: DockerChannel(client, config), name="docker", **kwargs)
    server.start()
    return server

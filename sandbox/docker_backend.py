"""Docker backend: the same harness server as the local backend, one container per worker.

The image (`execute.docker_image`, built offline by `make image` / `make image-test`, see docs/docker.md)
holds only an interpreter and libraries; the working tree's `sandbox/inside` (alone) is bind-mounted
read-only at /opt/daj-sandbox/inside when a container starts, so the harness is always the checkout's
own. Each container has no network (network_mode none), a read-only root, a tmpfs /tmp, a private
64 MB /dev/shm (its own IPC namespace), /dev not writable, no capabilities once the harness runs as
uid 65534, no new privileges, and docker's limits: memory (+swap), pids and a CPU quota. The harness
is pid 1 of the container's pid namespace (--own-pid-ns). Where this process may create cgroups (a
local daemon, root, cgroup v1 freezer), each container also gets a freezer cgroup of its own for its
candidates, mounted at /opt/daj-cgroup: the harness starts as root with only CAP_SETUID/SETGID, opens
it, and becomes uid 65534 (the directory stays writable by root alone), then stops and empties it
after every candidate, as in bwrap. Jobs and results are the harness protocol's JSON lines over the
attached stdin/stdout (docker's multiplexed stream).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import time
from pathlib import Path
from typing import Any

from daj.config import ExecuteConfig
from sandbox.client import Client, SandboxStartError
from sandbox.jobs import INSIDE_DIR, harness_digest
from sandbox.local import SANDBOX_ENV, SANDBOX_HARNESS, Cgroup

log = logging.getLogger(__name__)
HARNESS_ARGS = ["python", "-s", f"{SANDBOX_HARNESS}/main.py", "--tmp-root", "/tmp", "--own-pid-ns"]
CGROUP_MOUNT = "/opt/daj-cgroup"
SANDBOX_USER = "65534:65534"
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


def docker_ready(config: ExecuteConfig, client: Any | None = None) -> str | None:
    """Why the docker backend cannot run with `config` (no daemon, no image), or None when it can."""
    client = client or docker_client()
    if client is None:
        return "no docker daemon answers"
    try:
        client.images.get(config.docker_image)
    except Exception as e:  # ImageNotFound, or an API error
        return f"docker image {config.docker_image!r} not found ({type(e).__name__}): {BUILD_HINT}"
    return None


def docker_identity(config: ExecuteConfig, client: Any | None = None) -> str:
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


def container_options(config: ExecuteConfig, harness_dir: Path = INSIDE_DIR,
                      freezer: Path | None = None) -> dict:
    """Keyword arguments of client.containers.create for one sandbox container (`freezer`: the
    host path of the candidates' cgroup, or None to rely on the pid namespace sweep)."""
    memory = f"{config.sandbox_memory_mb}m"
    cpus = float(config.sandbox_cpus or 1.0)
    # execute.seccomp false: the harness loads no filter of its own (as the local backend)
    entrypoint = HARNESS_ARGS if config.seccomp else [*HARNESS_ARGS, "--no-seccomp"]
    volumes = {str(harness_dir): {"bind": SANDBOX_HARNESS, "mode": "ro"}}
    user, caps = SANDBOX_USER, []
    if freezer is not None:
        entrypoint = [*entrypoint, "--cgroup-dir", CGROUP_MOUNT, "--user", SANDBOX_USER]
        volumes[str(freezer)] = {"bind": CGROUP_MOUNT, "mode": "rw"}
        user, caps = "0:0", ["SETUID", "SETGID"]  # only to open the cgroup, then uid 65534 for good
    return {
        "image": config.docker_image,
        "entrypoint": entrypoint,
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
        "volumes": volumes,
        "user": user,
        "cap_drop": ["ALL"],
        "cap_add": caps,
        "security_opt": ["no-new-privileges"],
        "environment": dict(SANDBOX_ENV),
        "working_dir": "/tmp",
        "labels": {LABEL: "1", OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"},
    }


def ensure_image(client: Any, config: ExecuteConfig) -> None:
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

    def take(self) -> bytes:
        """The stdout bytes received so far (the protocol's), once."""
        out, self.stdout = self.stdout, b""
        return out


def freezer_cgroup(name: str) -> Path | None:
    """A cgroup v1 freezer cgroup of this host for one container's candidates, when we may make one
    (a local daemon, root); None otherwise (the harness then sweeps its pid namespace)."""
    base = Cgroup.ROOT / "freezer"
    host = os.environ.get("DOCKER_HOST", "")
    if not base.is_dir() or (host and not host.startswith("unix://")):
        return None
    path = base / "daj" / name
    try:
        path.mkdir(parents=True, exist_ok=True)
        Cgroup.remove_stale(path.parent)
        os.chmod(path, 0o755)  # root alone may write; uid 65534 (the candidates) only reads
    except OSError as e:
        log.debug("no freezer cgroup for the container: %s", e)
        return None
    return path


_counter = iter(range(1 << 30))


class DockerChannel:
    """One sandbox container, its attached socket, and its freezer cgroup where there is one."""

    def __init__(self, client: Any, config: ExecuteConfig):
        self.freezer = freezer_cgroup(f"ctr-{os.getpid()}-{next(_counter)}")
        try:
            self.container = client.containers.create(**container_options(config, freezer=self.freezer))
        except Exception as e:  # image gone, daemon gone or too slow: the backend cannot start
            self._remove_cgroup()
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

    def read(self, timeout: float) -> bytes | None:
        out = self.frames.take()
        if out:
            return out
        readable, _, _ = select.select([self.raw], [], [], max(0.0, timeout))
        if not readable:
            return b""
        chunk = self.raw.recv(1 << 16)
        if not chunk:
            return None
        self.frames.feed(chunk)
        return self.frames.take()

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
        self._remove_cgroup()

    def _remove_cgroup(self) -> None:
        if self.freezer is not None:
            for _ in range(50):  # the processes of a removed container take a moment to leave it
                try:
                    self.freezer.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
            self.freezer = None


_stale_checked = False


def docker_harness(config: ExecuteConfig, client: Any | None = None) -> Client:
    """A Client of a harness server in a container; raises SandboxStartError without a daemon or image."""
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
    harness = Client(lambda: DockerChannel(client, config), name="docker", retries=config.retries)
    harness.start()
    return harness

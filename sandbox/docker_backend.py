"""Docker backend: the same harness server inside a container of the image built from sandbox/Dockerfile.

The container has no network (network_disabled), a read-only root with a tmpfs /tmp, no capabilities,
uid 65534, and the limits set by docker: mem_limit, pids_limit and a CPU quota. The server is
pid 1 of its own pid namespace, so it kills every leftover process after each candidate. Jobs and
results travel as JSON lines over the attached stdin/stdout (docker's multiplexed stream).
"""

from __future__ import annotations

import logging
import select
import struct
import time
from typing import Any

from sandbox.config import HARNESS_DIR, SandboxConfig
from sandbox.local import SANDBOX_ENV
from sandbox.server import HarnessServer, SandboxStartError

log = logging.getLogger(__name__)
HARNESS_ARGS = ["python", "-s", "/opt/daj-sandbox/harness.py", "--tmp-root", "/tmp", "--own-pid-ns"]


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


def container_options(config: SandboxConfig) -> dict:
    """Keyword arguments of client.containers.create for one sandbox container."""
    memory = f"{config.sandbox_memory_mb}m"
    return {
        "image": config.docker_image,
        "entrypoint": HARNESS_ARGS,
        "stdin_open": True,
        "tty": False,
        "detach": True,
        "network_disabled": True,
        "network_mode": "none",
        "mem_limit": memory,
        "memswap_limit": memory,
        "pids_limit": config.pids_limit,
        "cpu_period": 100_000,
        "cpu_quota": 100_000,  # one CPU per sandbox
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,exec,size={max(64, 2 * config.output_mb + 256)}m,mode=1777"},
        "user": "65534:65534",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "environment": dict(SANDBOX_ENV),
        "working_dir": "/tmp",
        "labels": {"daj.sandbox": "1"},
    }


def ensure_image(client: Any, config: SandboxConfig) -> None:
    """Build the sandbox image from sandbox/Dockerfile unless it is already there."""
    import docker

    try:
        client.images.get(config.docker_image)
    except docker.errors.ImageNotFound:
        log.info("building docker image %s from %s/Dockerfile (once; several minutes)",
                 config.docker_image, HARNESS_DIR)
        client.images.build(path=str(HARNESS_DIR), tag=config.docker_image, rm=True)


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
        self.container = client.containers.create(**container_options(config))
        self.socket = self.container.attach_socket(
            params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        self.raw = getattr(self.socket, "_sock", self.socket)
        self.frames = FrameReader()
        self.container.start()

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

    def describe_failure(self) -> str:
        try:
            logs = self.container.logs(stdout=False, stderr=True)[-2000:].decode("utf-8", "replace")
        except Exception as e:  # the container may already be gone
            logs = str(e)
        return f"container {self.container.id[:12]}: {logs or self.frames.stderr.decode(errors='replace')}"

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            try:
                self.container.remove(force=True)
            except Exception as e:  # already removed
                log.debug("container removal: %s", e)


def docker_server(config: SandboxConfig, client: Any | None = None) -> HarnessServer:
    """A HarnessServer running in a container; raises SandboxStartError without a daemon."""
    client = client or docker_client()
    if client is None:
        raise SandboxStartError("execute.backend is docker but no docker daemon answers")
    ensure_image(client, config)
    server = HarnessServer(lambda: DockerChannel(client, config), name="docker")
    server.start()
    return server

"""Docker backend without a daemon: backend choice, container settings, the attach-stream framing, and
the real DockerChannel/HarnessServer code driven through a clearly-labelled test double of the docker
client (its "container" is the harness run as a local subprocess; there is no docker daemon here)."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import tempfile
import threading

import pytest

from daj.errors import DajError
from sandbox.config import HARNESS_DIR, SandboxConfig
from sandbox.docker_backend import FrameReader, container_options, docker_client, docker_server
from sandbox.runner import choose_backend


def test_auto_uses_docker_only_when_a_daemon_answers():
    assert choose_backend(SandboxConfig(backend="auto"), docker_probe=lambda: None) == "local"
    assert choose_backend(SandboxConfig(backend="auto"), docker_probe=lambda: object()) == "docker"
    assert choose_backend(SandboxConfig(backend="local"), docker_probe=lambda: object()) == "local"
    assert choose_backend(SandboxConfig(backend="docker"), docker_probe=lambda: None) == "docker"
    with pytest.raises(DajError, match="backend"):
        choose_backend(SandboxConfig(backend="podman"))


def test_no_daemon_here_means_local(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert docker_client(timeout=1) is None
    assert choose_backend(SandboxConfig(backend="auto")) == "local"
    with pytest.raises(Exception, match="no docker daemon"):
        docker_server(SandboxConfig(backend="docker"))


def test_container_is_offline_and_limited():
    cfg = SandboxConfig(sandbox_memory_mb=3000, pids_limit=77, docker_image="img:1")
    opts = container_options(cfg)
    assert opts["network_disabled"] is True and opts["network_mode"] == "none"
    assert opts["mem_limit"] == "3000m" and opts["memswap_limit"] == "3000m"
    assert opts["pids_limit"] == 77 and opts["cpu_quota"] == opts["cpu_period"]
    assert opts["read_only"] is True and "/tmp" in opts["tmpfs"]
    assert opts["user"] == "65534:65534" and opts["cap_drop"] == ["ALL"]
    assert opts["image"] == "img:1" and opts["entrypoint"][-1] == "--own-pid-ns"
    assert opts["environment"]["TZ"] == "UTC" and opts["environment"]["MPLBACKEND"] == "Agg"
    dockerfile = (HARNESS_DIR / "Dockerfile").read_text()
    assert "FROM python:3.10-slim" in dockerfile and "harness.py" in dockerfile
    pins = (HARNESS_DIR / "requirements-bcb.txt").read_text()
    assert "pandas==2.0.3" in pins and "scikit-learn==1.3.1" in pins


def test_container_options_are_accepted_by_the_docker_sdk():
    from docker.models.containers import _create_container_args

    args = _create_container_args(dict(container_options(SandboxConfig(pids_limit=64)), version="1.43"))
    host = args["host_config"]
    assert args["network_disabled"] and args["stdin_open"] and host["NetworkMode"] == "none"
    assert host["PidsLimit"] == 64 and host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
    assert host["Memory"] == SandboxConfig().sandbox_memory_mb << 20 and host["CpuQuota"] == 100_000


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload


def test_frame_reader_demultiplexes_partial_frames():
    data = frame(1, b'{"a": 1}\n{"b"') + frame(2, b"warning\n") + frame(1, b": 2}\n")
    reader = FrameReader()
    for i in range(0, len(data), 5):  # arrives in small pieces
        reader.feed(data[i:i + 5])
    assert reader.pop_line() == b'{"a": 1}' and reader.pop_line() == b'{"b": 2}'
    assert reader.pop_line() is None and reader.stderr == b"warning\n"


class FakeContainer:
    """TEST DOUBLE for a docker container: start() runs the harness as a local subprocess and pumps
    its stdin/stdout through a socket with docker's stream framing."""

    def __init__(self, options: dict):
        self.options, self.id = options, "fakecontainer0"
        self.ours, self.theirs = socket.socketpair()
        self.removed = False

    def attach_socket(self, params):
        assert params["stdin"] and params["stdout"] and params["stream"]
        return self.ours

    def start(self):
        tmp = tempfile.mkdtemp()
        # the image's harness path is replaced by the checkout's; no pid namespace here, so no
        # --own-pid-ns (kill(-1) is only for a real container)
        assert self.options["entrypoint"][2] == "/opt/daj-sandbox/harness.py"
        args = [str(HARNESS_DIR / "harness.py"), "--tmp-root", tmp]
        self.proc = subprocess.Popen([sys.executable, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, cwd=tmp)

        def out():
            for line in self.proc.stdout:
                self.theirs.sendall(frame(1, line))

        def inp():
            while chunk := self.theirs.recv(65536):
                self.proc.stdin.write(chunk)
                self.proc.stdin.flush()

        threading.Thread(target=out, daemon=True).start()
        threading.Thread(target=inp, daemon=True).start()

    def logs(self, stdout, stderr):
        return b""

    def remove(self, force):
        self.removed = True
        self.proc.kill()
        self.proc.wait()
        self.theirs.close()


class FakeClient:
    """TEST DOUBLE for docker.DockerClient (images present, containers are FakeContainer)."""

    def __init__(self):
        self.created: list[FakeContainer] = []
        self.images = self
        self.containers = self

    def get(self, tag):
        return tag

    def create(self, **options):
        self.created.append(FakeContainer(options))
        return self.created[-1]


def test_docker_channel_runs_jobs_through_the_attach_stream():
    client = FakeClient()
    server = docker_server(SandboxConfig(), client=client)
    try:
        assert server.hello["ready"]
        job = {"id": 5, "kind": "stdin", "code": "print(int(input()) * 2)", "timeout_s": 2,
               "tests": [{"input": "21", "output": "42"}, {"input": "1", "output": "3"}]}
        assert server.run(job)["outcomes"] == ["pass", "wrong_answer"]
        assert client.created[0].options["network_disabled"] is True
    finally:
        server.close()
    assert client.created[0].removed

"""Host side of the harness protocol: one long-lived harness server behind some byte channel.

A backend (local bwrap, docker) supplies a Channel; HarnessServer sends JSON jobs, reads JSON results
with a deadline, and restarts the server when it dies or hangs (a candidate may kill it), reporting
that candidate as a runtime error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60.0


class SandboxStartError(RuntimeError):
    """The isolation could not be started (bwrap missing or refused, docker image unusable)."""


class Channel(Protocol):
    def send(self, data: bytes) -> None: ...
    def recv_line(self, timeout: float) -> bytes | None: ...  # None: EOF or timeout
    def close(self) -> None: ...
    def describe_failure(self) -> str: ...


def job_budget(job: dict) -> float:
    """Seconds the host waits for one result: the harness' own deadline plus a margin."""
    n = max(1, len(job.get("tests") or []))
    per = float(job["timeout_s"]) * float(job.get("wall_factor", 2.0))
    return per * (1 if job["kind"] == "unittest" else n + 1) + 30.0


class HarnessServer:
    """Runs jobs one at a time on a harness server reached through channels made by `open_channel`."""

    def __init__(self, open_channel: Callable[[], Channel], name: str = "sandbox"):
        self.open_channel = open_channel
        self.name = name
        self.channel: Channel | None = None
        self.hello: dict = {}
        self.restarts = 0

    def start(self) -> None:
        channel = self.open_channel()
        line = channel.recv_line(START_TIMEOUT_S)
        try:
            hello = json.loads(line) if line else None
        except ValueError:
            hello = None
        if not isinstance(hello, dict) or not hello.get("ready"):
            why = channel.describe_failure()
            channel.close()
            raise SandboxStartError(f"{self.name}: the harness did not start: {why or line!r}")
        self.channel, self.hello = channel, hello

    def run(self, job: dict) -> dict:
        """Judge one job; a dead or hung server becomes a runtime_error / timeout for this job."""
        if self.channel is None:
            self.start()
        assert self.channel is not None
        start = time.monotonic()
        try:
            self.channel.send((json.dumps(job) + "\n").encode())
            line = self.channel.recv_line(job_budget(job))
        except OSError:
            line = None
        result = None
        if line:
            try:
                result = json.loads(line)
            except ValueError:
                result = None
        if isinstance(result, dict) and result.get("id") == job.get("id"):
            return result
        elapsed = time.monotonic() - start
        timed_out = elapsed >= job_budget(job) - 1
        log.warning("%s: harness server %s on job %s; restarting (%s)", self.name,
                    "hung" if timed_out else "died", job.get("id"), self.channel.describe_failure()[-300:])
        self.close()
        self.restarts += 1
        return {"id": job.get("id"), "outcomes": ["timeout" if timed_out else "runtime_error"],
                "names": None, "error": "the sandbox server was killed or hung while running this candidate",
                "seconds": round(elapsed, 4)}

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

"""Host side of the harness protocol: one long-lived harness server behind some byte channel.

A backend (local bwrap, docker) supplies a Channel; HarnessServer sends JSON jobs, reads JSON results
with a deadline, and restarts the server when it dies or hangs. Such a failure is an infrastructure
fault until it repeats: the job is rerun on a fresh server (`retries` times) and only a failure that
repeats every time is recorded against the candidate. A result the harness marks as a `fault` (its
own error, not the candidate's) is retried the same way and never becomes a verdict.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60.0
STATUSES = ("pass", "wrong_answer", "timeout", "runtime_error", "compile_error", "missing_dependency")


class SandboxStartError(RuntimeError):
    """The isolation could not be started (bwrap missing or refused, docker image unusable)."""


class Interrupted(RuntimeError):
    """The run was stopped (Ctrl-C): no verdict for this job."""


class HarnessFault(RuntimeError):
    """The harness failed on a job (not the candidate's doing), on every try."""


class Channel(Protocol):
    def send(self, data: bytes) -> None: ...
    def recv_line(self, timeout: float) -> bytes | None: ...  # None: EOF or timeout
    def close(self) -> None: ...
    def describe_failure(self) -> str: ...


def job_budget(job: dict) -> float:
    """Seconds the host waits for one result: the harness' own deadline plus a margin."""
    n = max(1, len(job.get("tests") or []))
    per = float(job["timeout_s"]) * float(job.get("wall_factor", 2.0))
    return per * (1 if job["kind"] == "unittest" else n + 2) + 30.0


def valid_result(result: object, job: dict) -> bool:
    """A well-formed result line for this job."""
    if not isinstance(result, dict) or result.get("id") != job.get("id"):
        return False
    outcomes = result.get("outcomes")
    if not isinstance(outcomes, list) or not all(o in STATUSES for o in outcomes):
        return False
    names = result.get("names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return False
    return isinstance(result.get("error", ""), str) and isinstance(result.get("seconds", 0.0), int | float)


class HarnessServer:
    """Runs jobs one at a time on a harness server reached through channels made by `open_channel`."""

    def __init__(self, open_channel: Callable[[], Channel], name: str = "sandbox", retries: int = 1):
        self.open_channel = open_channel
        self.name = name
        self.retries = max(0, int(retries))
        self.channel: Channel | None = None
        self.hello: dict = {}
        self.restarts = 0
        self.last_fault = ""
        self.stopping = threading.Event()
        self.lock = threading.Lock()

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
        """Judge one job. A server that dies or hangs is retried on a fresh one; raises Interrupted
        when stop() was called, HarnessFault when the harness itself fails on every try."""
        failures: list[tuple[str, float]] = []
        for _ in range(self.retries + 1):
            outcome = self._try(job)
            if isinstance(outcome, dict):
                return outcome
            failures.append(outcome)
        kinds = {kind for kind, _ in failures}
        if kinds == {"fault"}:
            raise HarnessFault(f"{self.name}: harness fault on job {job.get('id')}: {self.last_fault}")
        # died or hung every time: the candidate's doing, deterministically
        kind, elapsed = failures[-1]
        timed_out = kind == "hung"
        return {"id": job.get("id"), "outcomes": ["timeout" if timed_out else "runtime_error"],
                "names": None, "error": "the sandbox server was killed or hung while running this candidate "
                f"({len(failures)} times)", "seconds": round(elapsed, 4)}

    def _try(self, job: dict) -> dict | tuple[str, float]:
        if self.stopping.is_set():
            raise Interrupted
        if self.channel is None:
            self.start()
        assert self.channel is not None
        start = time.monotonic()
        try:
            self.channel.send((json.dumps(job) + "\n").encode())
            line = self.channel.recv_line(job_budget(job))
        except OSError:
            line = None
        if self.stopping.is_set():
            raise Interrupted
        result = None
        if line:
            try:
                result = json.loads(line)
            except ValueError:
                result = None
        elapsed = time.monotonic() - start
        if valid_result(result, job):
            if result.get("restart"):
                self.close()
            if not result.get("fault"):
                return result
            log.warning("%s: harness fault on job %s: %s", self.name, job.get("id"), result.get("fault"))
            self.last_fault = str(result.get("fault"))
            self.close()
            self.restarts += 1
            return "fault", elapsed
        timed_out = elapsed >= job_budget(job) - 1
        log.warning("%s: harness server %s on job %s; restarting (%s)", self.name,
                    "hung" if timed_out else "died", job.get("id"), self.channel.describe_failure()[-300:])
        self.close()
        self.restarts += 1
        return ("hung" if timed_out else "died"), elapsed

    def stop(self) -> None:
        """Stop now (from another thread): kill the server; the job in flight raises Interrupted."""
        self.stopping.set()
        channel = self.channel
        if channel is not None:
            kill = getattr(channel, "kill", None) or getattr(channel, "close", None)
            try:
                kill()
            except Exception as e:  # noqa: BLE001 - best effort: the job in flight ends at its deadline
                log.warning("%s: could not stop the server: %s", self.name, e)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
